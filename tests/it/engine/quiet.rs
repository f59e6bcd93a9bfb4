//! Quiet stretches: a database with nothing due but its ticker call lends its
//! connection's lane to the ticker engine (`src/db/engine.rs`), which makes the calls
//! until the stretch ends. With retry and maintenance ten minutes apart, each test
//! here runs inside such a stretch and checks that what must reach the database's
//! task still does: a call that hangs, a reload, the server closing the connection.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{Cluster, Daemon, poll, tick_count};

use super::{check, eager_queue, pgq_db, serving, wait_for};

/// Housekeeping far apart: a stretch lasts ten minutes.
const QUIET: [&str; 2] = ["retry_period = 600", "maint_period = 600"];

fn quiet_daemon(cluster: &Cluster, db: &str, extra: &[&str]) -> Daemon {
    let lines: Vec<&str> = QUIET.iter().chain(extra).copied().collect();
    let daemon = Daemon::start(&serving(cluster, &[db], &lines));
    daemon.wait_for_log("pgq version ok");
    let start = tick_count(cluster, db, "q");
    wait_for(&daemon, "five ticks", || {
        tick_count(cluster, db, "q") > start + 5
    });
    daemon
}

/// A ticker call that hangs (a transaction holds `pgq.queue`) is still cancelled
/// after ticker_timeout with pgqd's line, and ticking resumes once the lock is gone.
#[test]
fn a_hung_call_in_a_quiet_stretch_times_out() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "quiet_hung");
    eager_queue(cluster, &db, "q");
    let daemon = quiet_daemon(cluster, &db, &["ticker_period = 0.2", "ticker_timeout = 2"]);
    let mut holder = cluster.connect(&db);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("lock table pgq.queue in access exclusive mode")
        .unwrap();
    daemon.wait_for_log("ticker call timed out");
    lock.commit().unwrap();
    daemon.wait_for_log("ticker calls complete again");
    let after = tick_count(cluster, &db, "q");
    wait_for(&daemon, "ticks after the lock", || {
        tick_count(cluster, &db, "q") > after + 3
    });
}

/// A reload that shortens ticker_period from 1 s to 0.1 s takes effect within
/// seconds, not at the stretch's end: about ten ticks a second.
#[test]
fn a_reload_reaches_a_quiet_stretch() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "quiet_reload");
    eager_queue(cluster, &db, "q");
    let daemon = quiet_daemon(cluster, &db, &["ticker_period = 1"]);
    let faster: Vec<&str> = QUIET
        .iter()
        .copied()
        .chain(["ticker_period = 0.1"])
        .collect();
    std::fs::write(
        daemon.config_path(),
        crate::harness::ini(&serving(cluster, &[&db], &faster)),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    let mut client = cluster.connect(&db);
    // Within 15 s: the supervisor's look for other tickers, every 30 s, ends every
    // stretch too, and must not be what brings the reload in.
    let faster = poll(Duration::from_secs(15), || {
        let recent: i64 = client
            .query_one(
                "select count(*) from pgq.tick where tick_time > now() - interval '1 second'",
                &[],
            )
            .unwrap()
            .get(0);
        recent >= 8
    });
    check(
        &daemon,
        faster,
        "ten ticks a second within 15 s of the reload",
    );
}

/// The server closing the ticker's connection (pg_terminate_backend) is seen as such,
/// with pgqd's line, and ticking resumes on a new connection.
#[test]
fn a_quiet_connection_closed_by_the_server_is_replaced() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "quiet_closed");
    eager_queue(cluster, &db, "q");
    let daemon = quiet_daemon(cluster, &db, &["ticker_period = 0.2"]);
    let mut observer = cluster.connect("postgres");
    let ended: i64 = observer
        .query_one(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pgqd' and datname = $1) t",
            &[&db],
        )
        .unwrap()
        .get(0);
    assert!(ended >= 1, "no pgqd session in {db}");
    daemon.wait_for_log("the server closed the connection; reconnecting");
    let after = tick_count(cluster, &db, "q");
    wait_for(&daemon, "ticks on the new connection", || {
        tick_count(cluster, &db, "q") > after + 3
    });
}
