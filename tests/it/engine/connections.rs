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

/// Steady state opens one short-lived session per maintenance round and no other:
/// with database_list set (no discovery) and retry_period = maint_period = 1, over 10 s
/// of ticking and maintenance in two databases, `pg_stat_database.sessions` grows by
/// the number of maintenance rounds (give or take a round at each end of the window),
/// and the ticker backends stay the same processes (pgqd 3.5 also opens a new
/// connection for every retry round).
#[test]
fn steady_state_opens_a_session_per_maintenance_round_only() {
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
        "a pgqd connection per database, maintenance done",
        || {
            let held = dbs.iter().map(|db| pgqd_backends(&mut observer, db));
            held.sum::<i64>() >= 2
                && clients
                    .iter_mut()
                    .all(|c| pgq_calls(c, "maint_operations") > 0)
        },
    );
    let work = |clients: &mut Vec<postgres::Client>| -> Vec<[i64; 2]> {
        clients
            .iter_mut()
            .map(|c| ["ticker", "maint_operations"].map(|f| pgq_calls(c, f)))
            .collect()
    };
    let mut tickers_before = Vec::new();
    wait_for(&daemon, "both ticker backends", || {
        tickers_before = ticker_backends(&mut observer, &dbs);
        tickers_before.len() == 2
    });
    let (sessions_before, _) = sessions(&mut observer);
    let work_before = work(&mut clients);
    std::thread::sleep(Duration::from_secs(10)); // the measured window
    let work_after = work(&mut clients);
    let (sessions_after, _) = sessions(&mut observer);
    let mut rounds = 0;
    for (before, after) in work_before.iter().zip(&work_after) {
        check(
            &daemon,
            after[0] >= before[0] + 20 && after[1] >= before[1] + 5,
            &format!("ticker, maint calls went from {before:?} to {after:?} in 10 s"),
        );
        rounds += after[1] - before[1];
    }
    let opened = sessions_after - sessions_before;
    check(
        &daemon,
        (rounds - 2..=rounds + 2).contains(&opened),
        &format!("{opened} new sessions in 10 s for {rounds} maintenance rounds"),
    );
    // Polled: at a given moment a kept backend may show another statement.
    wait_for(&daemon, "the same ticker backends all along", || {
        ticker_backends(&mut observer, &dbs) == tickers_before
    });
}

/// The pids and start times of the backends in `dbs` whose last statement is the ticker
/// call (in `dbs` only: other tests' daemons tick their own databases on the shared
/// cluster).
fn ticker_backends(
    observer: &mut postgres::Client,
    dbs: &[String],
) -> Vec<(i32, std::time::SystemTime)> {
    observer
        .query(
            "select pid, backend_start from pg_stat_activity
              where application_name = 'pgqd' and query like 'select pgq.ticker()%'
                and datname = any($1) order by pid",
            &[&dbs],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// pgqd keeps one connection per database, the ticker's, checked all along several
/// quick maintenance rounds: never more than two at a sample (the ticker's and a
/// round's short-lived one), the same ticker backend throughout, and no session
/// opened meanwhile but the rounds' (`pg_stat_database.sessions`, which also sees
/// sessions too short for a sample).
#[test]
fn one_kept_connection_per_database() {
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
    let mut ticker = Vec::new();
    wait_for(&daemon, "pgqd ticking", || {
        ticker = ticker_backends(&mut observer, std::slice::from_ref(&db));
        ticker.len() == 1
    });
    // Not settled: the rounds go on. Backends report their sessions lazily (about once
    // a second, and at exit), hence the slack of the check below.
    let before = db_sessions(&mut observer, &db);
    let from = pgq_calls(&mut client, "maint_operations");
    let mut most = 0;
    wait_for(&daemon, "several maintenance rounds", || {
        let held = pgqd_backends(&mut observer, &db);
        check(
            &daemon,
            held <= 2,
            &format!("{held} pgqd connections to {db}"),
        );
        most = most.max(held);
        pgq_calls(&mut client, "maint_operations") >= from + 10
    });
    check(&daemon, most >= 1, "pgqd's connection seen");
    let rounds = pgq_calls(&mut client, "maint_operations") - from;
    let after = db_sessions(&mut observer, &db) - before;
    check(
        &daemon,
        after <= rounds + 3,
        &format!("{after} sessions opened in {db} for {rounds} maintenance rounds"),
    );
    // Polled: at a given moment the kept backend may show another statement.
    wait_for(&daemon, "the same ticker backend all along", || {
        ticker_backends(&mut observer, std::slice::from_ref(&db)) == ticker
    });
}

/// `pg_stat_database.sessions` of `db`, read afresh.
fn db_sessions(observer: &mut postgres::Client, db: &str) -> i64 {
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
    wait_for(&daemon, "the same ticker backend all along", || {
        ticker_pid(&mut observer) == pid
    });
    let retry_calls = pgq_calls(&mut client, "maint_retry_events");
    check(
        &daemon,
        retry_calls == 0,
        &format!("pgq.maint_retry_events() called {retry_calls} times with no event due"),
    );
    check(&daemon, samples > 10, &format!("{samples} samples"));
}
