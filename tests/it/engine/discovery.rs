//! Which databases are served: auto-detection through initial_database, database_list.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, Daemon, ticker_calls, unique};

use super::{
    all_ticks, check, detecting, eager_queue, ident, lines_with, pgq_db, pgqd_backends, serving,
    wait_for,
};

/// With auto-detection, a database created (with pgq) while the daemon runs is
/// picked up and ticked, and one dropped with `drop database ... with (force)` is
/// logged as `Unregister database: [name]`.
#[test]
fn new_database_is_served_and_dropped_one_unregistered() {
    let cluster = Cluster::start();
    let daemon = Daemon::start(&detecting(
        &cluster,
        "postgres",
        &["check_period = 0.5", "ticker_period = 0.2"],
    ));
    daemon.wait_for_log("auto-detecting dbs");
    let db = pgq_db(&cluster, "late");
    eager_queue(&cluster, &db, "q");
    daemon.wait_for_log(&format!("LOG [{db}]: pgq version ok: 3.5"));
    wait_for(&daemon, "ticks in the new database", || {
        all_ticks(&cluster, &db) > 2
    });

    cluster.exec(
        "postgres",
        &format!("drop database {} with (force)", ident(&db)),
    );
    daemon.wait_for_log(&format!("LOG Unregister database: [{db}]"));
}

/// A database without pgq is probed again every check_period: installing pgq in it
/// later is picked up within a few check periods (check_period = 0.5), and it ticks.
#[test]
fn pgq_installed_later_is_picked_up() {
    let cluster = Cluster::start();
    let db = cluster.create_db("nopgq");
    let daemon = Daemon::start(&detecting(
        &cluster,
        "postgres",
        &["check_period = 0.5", "ticker_period = 0.2"],
    ));
    daemon.wait_for_log(&format!("[{db}]: no pgq schema"));
    cluster.exec(&db, "create extension pgq");
    let installed = Instant::now();
    eager_queue(&cluster, &db, "q");
    daemon.wait_for_log(&format!("LOG [{db}]: pgq version ok: 3.5"));
    let noticed = installed.elapsed();
    wait_for(&daemon, "ticks after pgq was installed", || {
        all_ticks(&cluster, &db) > 2
    });
    check(
        &daemon,
        noticed < Duration::from_secs(5),
        &format!("pgq noticed {noticed:?} after it was installed"),
    );
}

/// database_list limits the set: a database with pgq that is not listed gets no
/// connection and no ticks while a listed one ticks.
#[test]
fn database_list_limits_the_set() {
    let cluster = Cluster::shared();
    let listed = pgq_db(cluster, "listed");
    let other = pgq_db(cluster, "unlisted");
    eager_queue(cluster, &listed, "q");
    eager_queue(cluster, &other, "q");
    let other_ticks = all_ticks(cluster, &other);
    let daemon = Daemon::start(&serving(cluster, &[&listed], &["ticker_period = 0.2"]));
    let mut observer = cluster.connect("postgres");
    wait_for(&daemon, "the listed database ticking", || {
        check(
            &daemon,
            pgqd_backends(&mut observer, &other) == 0,
            "pgqd connected to the unlisted database",
        );
        all_ticks(cluster, &listed) > 5
    });
    check(
        &daemon,
        all_ticks(cluster, &other) == other_ticks,
        "the unlisted database got ticks",
    );
    check(
        &daemon,
        !daemon.output().contains(&other),
        "the unlisted database is named in the log",
    );
}

/// A database_list entry that does not exist (here `name  # comment`, as a popular
/// tutorial writes it) is reported by name once, as the start of an outage, with a
/// hint that pgqd.ini has no inline comments (then reminded at most once a minute),
/// and tried again about once per check_period, not in a reconnect loop; the other
/// listed database ticks meanwhile.
#[test]
fn missing_listed_database_is_reported_once_and_retried_every_check_period() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "present");
    eager_queue(cluster, &db, "q");
    let missing = format!("{}  # my db", unique("absent"));
    let started = Instant::now();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db, &missing],
        &["ticker_period = 0.2", "check_period = 1"],
    ));
    let label = format!("[{missing}]: ");
    let count = |needles: &[&str]| lines_with(&daemon.output(), needles);
    // The daemon runs with -v: each later attempt is a DEBUG line of the outage.
    wait_for(&daemon, "two more attempts on the missing database", || {
        count(&[&label, "still unreachable", "does not exist"]) >= 2
    });
    check(
        &daemon,
        count(&[&label, " ERROR ", "does not exist", "no inline comments"]) == 1,
        "one report naming the database with the hint",
    );
    let attempts = count(&[&label, "does not exist"]);
    let allowed = 2 * started.elapsed().as_secs() as usize + 2;
    check(
        &daemon,
        attempts <= allowed,
        &format!(
            "{attempts} attempts in {:?}: more than {allowed}",
            started.elapsed()
        ),
    );
    check(
        &daemon,
        all_ticks(cluster, &db) > 2,
        "the present database ticks",
    );
}

/// A pgq installed without the extension mechanism (no `pg_extension` row), where
/// `pgq.version()` returns NULL, is served since `pgq.ticker()` exists (pgqd 3.5
/// rejects it): the probe falls back to the schema and `pgq.version()`.
#[test]
fn pgq_with_null_version_is_served() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "noversion");
    eager_queue(cluster, &db, "q");
    cluster.exec(
        &db,
        "create or replace function pgq.version() returns text language sql as 'select null::text'",
    );
    // As a pgq installed from its SQL script: its objects without the extension row.
    cluster.exec(
        &db,
        "delete from pg_catalog.pg_extension where extname = 'pgq'",
    );
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 0.2"]));
    daemon.wait_for_log(&format!(
        "LOG [{db}]: pgq version ok: unknown (pgq.version() is NULL, pgq.ticker() exists)"
    ));
    wait_for(&daemon, "ticks with a NULL pgq.version()", || {
        all_ticks(cluster, &db) > 2
    });
}

/// The probe reads pgq's version from `pg_extension`, as `pgq.version()` itself does,
/// without calling it: the ticker's backend never compiles that PL/pgSQL function.
/// Counted by the server (`track_functions = all`): the ticker calls show the
/// session's statistics are in, and `pgq.version()` has none.
#[test]
fn the_version_is_read_without_calling_pgq_version() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "extversion");
    eager_queue(cluster, &db, "q");
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 0.2"]));
    daemon.wait_for_log(&format!("LOG [{db}]: pgq version ok: 3.5"));
    wait_for(&daemon, "ticker calls counted by the server", || {
        ticker_calls(cluster, &db) > 2
    });
    let version_calls: i64 = cluster
        .connect(&db)
        .query_one(
            "select coalesce(sum(calls), 0)::int8 from pg_stat_user_functions where schemaname = 'pgq' and funcname = 'version'",
            &[],
        )
        .unwrap()
        .get(0);
    check(&daemon, version_calls == 0, "no call of pgq.version()");
}

/// With the server down at start, discovery tries again with the reconnect backoff
/// (100 ms doubling to 2 s) rather than after check_period: with check_period = 60 the
/// database ticks within the 30 s deadline after the server comes up (before the
/// fix it waited the whole check_period).
#[test]
fn discovery_backs_off_while_the_server_is_down() {
    let cluster = Cluster::start();
    let db = pgq_db(&cluster, "late");
    eager_queue(&cluster, &db, "q");
    let before = all_ticks(&cluster, &db);
    cluster.stop_server();
    let daemon = Daemon::start(&detecting(
        &cluster,
        "postgres",
        &["check_period = 60", "ticker_period = 0.2"],
    ));
    daemon.wait_for_log("job=discovery");
    cluster.start_server();
    wait_for(&daemon, "ticks once the server is up", || {
        all_ticks(&cluster, &db) > before
    });
}
