//! The engine against real PgQ: ticking, retry, maintenance, discovery, recovery.
//!
//! Every test asserts an outcome visible in the database (ticks, batches, calls,
//! sessions) or in the daemon's log, and waits for it with a deadline.

mod connections;
mod discovery;
mod isolation;
mod maint;
mod names;
mod quiet;
mod recovery;
mod retry;
mod standby;
mod ticking;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::harness::{Cluster, Daemon, wait_until};

/// The `[pgqd]` body for a daemon serving exactly `dbs` (no discovery), plus `extra` lines.
pub fn serving(cluster: &Cluster, dbs: &[&str], extra: &[&str]) -> String {
    let mut ini = format!(
        "base_connstr = {}\ndatabase_list = {}\n",
        cluster.connstr(),
        dbs.join(", ")
    );
    push_lines(&mut ini, extra);
    ini
}

/// The `[pgqd]` body for a daemon auto-detecting the databases through `initial`.
pub fn detecting(cluster: &Cluster, initial: &str, extra: &[&str]) -> String {
    let mut ini = format!(
        "base_connstr = {}\ninitial_database = {initial}\n",
        cluster.connstr()
    );
    push_lines(&mut ini, extra);
    ini
}

fn push_lines(ini: &mut String, lines: &[&str]) {
    for line in lines {
        ini.push_str(line);
        ini.push('\n');
    }
}

/// `wait_until`, printing the daemon's output when the deadline passes.
pub fn wait_for(daemon: &Daemon, what: &str, condition: impl FnMut() -> bool) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| wait_until(what, condition))) {
        eprintln!("pgqd output:\n{}", daemon.output());
        resume_unwind(panic);
    }
}

/// Asserts `condition`, printing the daemon's output when it does not hold.
pub fn check(daemon: &Daemon, condition: bool, what: &str) {
    assert!(condition, "{what}; pgqd output:\n{}", daemon.output());
}

/// The number of log lines that contain every one of `needles`.
pub fn lines_with(output: &str, needles: &[&str]) -> usize {
    output
        .lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .count()
}

/// A new database with pgq ([`Cluster::create_pgq_db`]).
pub fn pgq_db(cluster: &Cluster, prefix: &str) -> String {
    cluster.create_pgq_db(prefix)
}

/// `create extension pgq` in `db` ([`Cluster::install_pgq`]).
pub fn install_pgq(cluster: &Cluster, db: &str) {
    cluster.install_pgq(db);
}

/// Creates `queue` so that every `pgq.ticker()` call ticks it (no lag, no idle
/// period): the tick count then follows the ticker calls one to one.
pub fn eager_queue(cluster: &Cluster, db: &str, queue: &str) {
    let mut client = cluster.connect(db);
    for sql in [
        "select pgq.create_queue($1)",
        "select pgq.set_queue_config($1, 'ticker_max_lag', '0')",
        "select pgq.set_queue_config($1, 'ticker_idle_period', '0')",
    ] {
        client
            .query(sql, &[&queue])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// All ticks in `db`, read from `pgq.tick` alone (so a lock on `pgq.queue` does not block it).
pub fn all_ticks(cluster: &Cluster, db: &str) -> i64 {
    cluster
        .connect(db)
        .query_one("select count(*) from pgq.tick", &[])
        .unwrap()
        .get(0)
}

/// Backends of pgqd (application_name `pgqd`) connected to `db`.
pub fn pgqd_backends(client: &mut postgres::Client, db: &str) -> i64 {
    client
        .query_one(
            "select count(*) from pg_stat_activity where application_name = 'pgqd' and datname = $1",
            &[&db],
        )
        .unwrap()
        .get(0)
}

/// `name` quoted as an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
