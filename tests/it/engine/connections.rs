//! Connections: kept rather than churned, one per database, templates not held.

use std::time::Duration;

use crate::harness::{Cluster, Daemon};

use super::{check, detecting, eager_queue, pgq_db, pgqd_backends, serving, wait_for};

/// `pgq.<name>()` calls counted by the server in the database `client` is connected to.
fn pgq_calls(client: &mut postgres::Client, name: &str) -> i64 {
    client
        .query_one(
            "select coalesce(sum(calls), 0)::int8 from pg_stat_user_functions where schemaname = 'pgq' and funcname = $1",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Sessions ever opened on the cluster, and the pgqd backends now connected (pid and
/// start time), read on the one long-lived `observer` connection.
fn sessions(observer: &mut postgres::Client) -> (i64, Vec<(i32, std::time::SystemTime)>) {
    observer
        .batch_execute("select pg_stat_clear_snapshot()")
        .unwrap();
    let total = observer
        .query_one("select sum(sessions)::int8 from pg_stat_database", &[])
        .unwrap()
        .get(0);
    let backends = observer
        .query(
            "select pid, backend_start from pg_stat_activity where application_name = 'pgqd' order by pid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    (total, backends)
}

/// Steady state opens no sessions: with database_list set (no discovery) and
/// retry_period = maint_period = 1, over 10 s of ticking, retry and maintenance in two
/// databases, `pg_stat_database.sessions` does not grow and the pgqd backends stay the
/// same processes (pgqd 3.5 opens a new connection for every retry and maint round).
#[test]
fn steady_state_opens_no_sessions() {
    let cluster = Cluster::start();
    let dbs = [pgq_db(&cluster, "steady"), pgq_db(&cluster, "steady")];
    for db in &dbs {
        eager_queue(&cluster, db, "q");
    }
    let daemon = Daemon::start(&serving(
        &cluster,
        &[&dbs[0], &dbs[1]],
        &[
            "ticker_period = 0.2",
            "retry_period = 1",
            "maint_period = 1",
        ],
    ));
    let mut clients: Vec<postgres::Client> = dbs.iter().map(|db| cluster.connect(db)).collect();
    let mut observer = cluster.connect("postgres");
    wait_for(
        &daemon,
        "one pgqd connection per database, maintenance done",
        || {
            let held = dbs.iter().map(|db| pgqd_backends(&mut observer, db));
            held.sum::<i64>() == 2
                && clients
                    .iter_mut()
                    .all(|c| pgq_calls(c, "maint_operations") > 0)
        },
    );
    let work = |clients: &mut Vec<postgres::Client>| -> Vec<[i64; 3]> {
        clients
            .iter_mut()
            .map(|c| ["ticker", "maint_retry_events", "maint_operations"].map(|f| pgq_calls(c, f)))
            .collect()
    };
    let (sessions_before, backends_before) = sessions(&mut observer);
    let work_before = work(&mut clients);
    std::thread::sleep(Duration::from_secs(10)); // the measured window
    let work_after = work(&mut clients);
    let (sessions_after, backends_after) = sessions(&mut observer);

    for (before, after) in work_before.iter().zip(&work_after) {
        check(
            &daemon,
            after[0] >= before[0] + 20 && after[1] >= before[1] + 5 && after[2] >= before[2] + 5,
            &format!("ticker, retry, maint calls went from {before:?} to {after:?} in 10 s"),
        );
    }
    check(
        &daemon,
        sessions_after == sessions_before,
        &format!("{} new sessions in 10 s", sessions_after - sessions_before),
    );
    check(
        &daemon,
        backends_after == backends_before,
        &format!("pgqd backends changed: {backends_before:?} -> {backends_after:?}"),
    );
}

/// pgqd holds one connection per database (ticker, retry and maintenance share it),
/// checked all along several quick retry and maintenance rounds: never two at a
/// sample, and no session opened meanwhile (`pg_stat_database.sessions` unchanged,
/// which also sees sessions too short for a sample).
#[test]
fn one_connection_per_database() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "conns");
    eager_queue(cluster, &db, "q");
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &[
            "ticker_period = 0.1",
            "retry_period = 0.2",
            "maint_period = 0.2",
        ],
    ));
    let mut observer = cluster.connect("postgres");
    // The test's own session in the database, opened before the count starts.
    let mut client = cluster.connect(&db);
    wait_for(&daemon, "pgqd connected", || {
        pgqd_backends(&mut observer, &db) == 1
    });
    let before = settled_sessions(&mut observer, &db);
    let from = pgq_calls(&mut client, "maint_operations");
    let mut most = 0;
    wait_for(&daemon, "several maintenance rounds", || {
        let held = pgqd_backends(&mut observer, &db);
        check(
            &daemon,
            held <= 1,
            &format!("{held} pgqd connections to {db}"),
        );
        most = most.max(held);
        pgq_calls(&mut client, "maint_operations") >= from + 10
    });
    check(&daemon, most == 1, "the one connection seen");
    let after = settled_sessions(&mut observer, &db);
    check(
        &daemon,
        after == before,
        &format!("sessions opened in {db} meanwhile: {before} -> {after}"),
    );
}

/// `pg_stat_database.sessions` of `db` once it has settled: backends report their
/// statistics lazily (about once a second, and at exit), so two reads 1.5 s apart must
/// agree; each read drops the snapshot of the one before.
fn settled_sessions(observer: &mut postgres::Client, db: &str) -> i64 {
    let mut read = || -> i64 {
        observer
            .batch_execute("select pg_stat_clear_snapshot()")
            .unwrap();
        observer
            .query_one(
                "select coalesce((select sessions from pg_stat_database where datname = $1), 0)",
                &[&db],
            )
            .unwrap()
            .get(0)
    };
    let mut last = read();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(1500));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!(
        "pg_stat_database.sessions of {db} still growing after 30 s: {last}, sessions opened all along"
    );
}

/// A template database is never held open: with initial_database = template1 (and
/// pgq installed in it, so every copy gets pgq and is served), `create database`
/// (which copies template1 and fails if anyone is connected to it for 5 s) succeeds
/// again and again while the daemon lists databases every 0.5 s.
#[test]
fn template_database_is_not_held_open() {
    let cluster = Cluster::start();
    cluster.exec("template1", "create extension pgq");
    let daemon = Daemon::start(&detecting(
        &cluster,
        "template1",
        &["check_period = 0.5", "ticker_period = 0.2"],
    ));
    daemon.wait_for_log("[postgres]: no pgq schema");
    for round in 0..4 {
        let name = format!("copy_{round}");
        let mut admin = cluster.connect("postgres");
        if let Err(e) = admin.batch_execute(&format!("create database {name}")) {
            panic!(
                "create database {name}: {e}; pgqd output:\n{}",
                daemon.output()
            );
        }
        daemon.wait_for_log(&format!("LOG [{name}]: pgq version ok"));
    }
    check(
        &daemon,
        !daemon.output().contains("[template1]: pgq version ok"),
        "a template database is served",
    );
}

/// The ticker's kept backend never runs pgq's maintenance functions, nor
/// `pgq.maint_retry_events()` while no event is due: each maintenance round opens a
/// short-lived session of its own, and the retry check is plain SQL. Its last
/// statement, sampled all along, is never a `maint_` call, and the retry function is
/// not called at all.
#[test]
fn housekeeping_stays_off_the_ticker_session() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "rounds");
    eager_queue(cluster, &db, "q");
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &[
            "ticker_period = 0.1",
            "retry_period = 0.3",
            "maint_period = 0.3",
        ],
    ));
    let mut observer = cluster.connect("postgres");
    let mut client = cluster.connect(&db);
    let ticker_pid = |observer: &mut postgres::Client| -> Option<i32> {
        observer
            .query_opt(
                "select pid from pg_stat_activity where datname = $1 and query like 'select pgq.ticker()%'",
                &[&db],
            )
            .unwrap()
            .map(|r| r.get(0))
    };
    let mut pid = None;
    wait_for(&daemon, "the ticker's backend", || {
        pid = ticker_pid(&mut observer);
        pid.is_some()
    });
    let (sessions_before, _) = sessions(&mut observer);
    let calls_before = pgq_calls(&mut client, "maint_operations");
    let mut samples = 0;
    wait_for(&daemon, "ten maintenance rounds", || {
        let last: String = observer
            .query_one(
                "select coalesce(max(query), '') from pg_stat_activity where pid = $1",
                &[&pid],
            )
            .unwrap()
            .get(0);
        check(
            &daemon,
            !last.contains("maint_"),
            &format!("the ticker's backend ran {last:?}"),
        );
        samples += 1;
        pgq_calls(&mut client, "maint_operations") >= calls_before + 10
    });
    let (sessions_after, _) = sessions(&mut observer);
    check(
        &daemon,
        sessions_after >= sessions_before + 10,
        &format!(
            "{} new sessions over ten maintenance rounds",
            sessions_after - sessions_before
        ),
    );
    check(
        &daemon,
        ticker_pid(&mut observer) == pid,
        "the same ticker backend all along",
    );
    let retry_calls = pgq_calls(&mut client, "maint_retry_events");
    check(
        &daemon,
        retry_calls == 0,
        &format!("pgq.maint_retry_events() called {retry_calls} times with no event due"),
    );
    check(&daemon, samples > 10, &format!("{samples} samples"));
}
