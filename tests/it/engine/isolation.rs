//! Fault isolation: a blocked database does not hold up another, a broken queue does
//! not stop the other queues of its database.

use std::time::Instant;

use crate::harness::{Cluster, Daemon, tick_count};

use super::{all_ticks, check, eager_queue, lines_with, pgq_db, pgqd_backends, serving, wait_for};

/// While a transaction holds `lock table pgq.queue in access exclusive mode` in
/// database A, database B keeps ticking (at no less than half its rate) and A's
/// blocked ticker call is cancelled after ticker_timeout = 2; once the lock is
/// released, A ticks again.
#[test]
fn locked_database_does_not_hold_up_another() {
    let cluster = Cluster::shared();
    let a = pgq_db(cluster, "locked");
    let b = pgq_db(cluster, "free");
    eager_queue(cluster, &a, "q");
    eager_queue(cluster, &b, "q");
    let daemon = Daemon::start(&serving(
        cluster,
        &[&a, &b],
        &["ticker_period = 0.2", "ticker_timeout = 2"],
    ));
    wait_for(&daemon, "both databases ticking", || {
        all_ticks(cluster, &a) > 2 && all_ticks(cluster, &b) > 2
    });

    let mut holder = cluster.connect(&a);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("lock table pgq.queue in access exclusive mode")
        .unwrap();
    let mut observer = cluster.connect("postgres");
    wait_for(&daemon, "A's ticker waiting for the lock", || {
        ticker_waiting(&mut observer, &a)
    });
    let (since, b_before, a_blocked) = (
        Instant::now(),
        all_ticks(cluster, &b),
        all_ticks(cluster, &a),
    );
    let a_label = format!("[{a}]: ");
    wait_for(&daemon, "A's blocked ticker call cancelled", || {
        lines_with(&daemon.output(), &[&a_label, "timed out after 2s"]) == 1
    });
    // Keep the lock through at least two more timeouts (they are not logged again):
    // each timeout replaces the connection, so three timed-out calls are three
    // different backends seen waiting for the lock.
    let mut blocked_backends = std::collections::BTreeSet::new();
    wait_for(&daemon, "three ticker calls blocked in turn", || {
        blocked_backends.extend(lock_waiters(&mut observer, &a));
        blocked_backends.len() >= 3
    });
    let b_gained = all_ticks(cluster, &b) - b_before;
    let expected = since.elapsed().as_secs_f64() / 0.2;
    check(
        &daemon,
        b_gained as f64 >= expected / 2.0,
        &format!(
            "B ticked {b_gained} times in {:?} while A was blocked",
            since.elapsed()
        ),
    );
    check(
        &daemon,
        all_ticks(cluster, &a) == a_blocked,
        "A ticked while locked",
    );
    // Cancelled server-side, the timed-out calls do not linger as backends waiting for
    // the lock: at most the current ticker call and the housekeeping one wait in A.
    let waiting = pgqd_backends(&mut observer, &a);
    check(
        &daemon,
        waiting <= 2,
        &format!("{waiting} pgqd backends in A"),
    );

    lock.commit().unwrap();
    wait_for(&daemon, "A ticking again after the lock is gone", || {
        all_ticks(cluster, &a) > a_blocked + 2
    });
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &[&a_label, "timed out after 2s"]) == 1,
        "one timeout line per streak",
    );
    let streak = output
        .lines()
        .find_map(|l| l.split("complete again after ").nth(1))
        .and_then(|rest| rest.split(' ').next()?.parse::<u32>().ok());
    check(
        &daemon,
        streak.is_some_and(|n| n >= 3),
        &format!("recovery line counts the timeouts: {streak:?}"),
    );
}

/// When `pgq.ticker(queue)` raises for one queue (a trigger on pgq.tick refuses its
/// ticks), the other queues of the same database keep getting ticks, and the log
/// names the failing queue.
#[test]
fn broken_queue_does_not_stop_the_others() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "broken");
    for queue in ["q_a", "q_broken", "q_c"] {
        eager_queue(cluster, &db, queue);
    }
    let broken: i32 = cluster
        .connect(&db)
        .query_one(
            "select queue_id from pgq.queue where queue_name = 'q_broken'",
            &[],
        )
        .unwrap()
        .get(0);
    cluster.exec(
        &db,
        &format!(
            "create function refuse_tick() returns trigger language plpgsql as
               $$ begin raise exception 'this queue is broken'; end $$;
             create trigger refuse before insert on pgq.tick for each row
               when (new.tick_queue = {broken}) execute function refuse_tick();"
        ),
    );
    let broken_before = tick_count(cluster, &db, "q_broken");
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 0.2"]));
    wait_for(&daemon, "q_a and q_c ticking", || {
        tick_count(cluster, &db, "q_a") > 5 && tick_count(cluster, &db, "q_c") > 5
    });
    check(
        &daemon,
        tick_count(cluster, &db, "q_broken") == broken_before,
        "the broken queue got a tick",
    );
    let output = daemon.output();
    check(
        &daemon,
        lines_with(
            &output,
            &["ticker failed for queue q_broken", "this queue is broken"],
        ) == 1,
        "the failing queue is named once",
    );
    check(
        &daemon,
        lines_with(&output, &["q_a"]) == 0 && lines_with(&output, &["q_c"]) == 0,
        "a healthy queue named as failing",
    );
}

/// SIGINT while a ticker call waits for a lock: the daemon exits 0 before its 5 s stop
/// deadline (no "did not stop" line), and the waiting calls are cancelled
/// server-side, so no pgqd backend is left waiting for the lock after the daemon is
/// gone.
#[test]
fn shutdown_cancels_blocked_calls() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "stopblocked");
    eager_queue(cluster, &db, "q");
    let mut daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &["ticker_period = 0.2", "ticker_timeout = 60"],
    ));
    wait_for(&daemon, "ticking", || all_ticks(cluster, &db) > 2);
    let mut holder = cluster.connect(&db);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("lock table pgq.queue in access exclusive mode")
        .unwrap();
    let mut observer = cluster.connect("postgres");
    wait_for(&daemon, "the ticker waiting for the lock", || {
        ticker_waiting(&mut observer, &db)
    });
    daemon.signal(nix::sys::signal::Signal::SIGINT);
    let asked = Instant::now();
    let code = daemon.wait_exit();
    let took = asked.elapsed();
    check(&daemon, code == Some(0), &format!("exit code {code:?}"));
    // Judged by the daemon itself: its tasks stopped within its deadline. The wall
    // clock only guards against a hang (a loaded machine may take seconds to reap).
    check(
        &daemon,
        lines_with(&daemon.output(), &["did not stop within"]) == 0,
        "a task missed the stop deadline",
    );
    check(
        &daemon,
        took < std::time::Duration::from_secs(15),
        &format!("took {took:?} to stop"),
    );
    wait_for(&daemon, "no pgqd backend left", || {
        pgqd_backends(&mut observer, &db) == 0
    });
    lock.commit().unwrap();
}

/// The pids of pgqd backends in `db` waiting for a lock in a ticker call.
fn lock_waiters(observer: &mut postgres::Client, db: &str) -> Vec<i32> {
    observer
        .query(
            "select pid from pg_stat_activity where application_name = 'pgqd' and datname = $1 and wait_event_type = 'Lock' and query like 'select pgq.ticker()%'",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Whether a pgqd backend in `db` is waiting for a lock in `select pgq.ticker()`.
fn ticker_waiting(observer: &mut postgres::Client, db: &str) -> bool {
    observer
        .query_one(
            "select count(*) from pg_stat_activity where application_name = 'pgqd' and datname = $1 and wait_event_type = 'Lock' and query like 'select pgq.ticker()%'",
            &[&db],
        )
        .unwrap()
        .get::<_, i64>(0)
        > 0
}

/// A queue whose tick sequence or event sequence is gone makes `pgq.ticker()` raise
/// 42P01 like a missing pgq would; it is a queue failure, not "pgq is gone": over
/// 20 s the healthy queue keeps ticking, each broken queue is named once, the
/// database gets at most 5 new sessions and at most 5 ERROR/WARNING lines (before the
/// fix: a re-probe loop of about 230 sessions a second).
#[test]
fn missing_queue_sequence_is_a_queue_failure() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "noseq");
    for queue in ["q_ok", "q_noticks", "q_noevents"] {
        eager_queue(cluster, &db, queue);
    }
    cluster.exec(
        &db,
        "update pgq.queue set queue_tick_seq = 'no_such_seq' where queue_name = 'q_noticks';
         do $$ begin
           execute 'drop sequence ' || (select queue_event_seq from pgq.queue
                                         where queue_name = 'q_noevents') || ' cascade';
         end $$;",
    );
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 0.2"]));
    wait_for(&daemon, "q_ok ticking", || {
        tick_count(cluster, &db, "q_ok") > 2
    });
    let mut observer = cluster.connect("postgres");
    let sessions = |observer: &mut postgres::Client| -> i64 {
        observer
            .batch_execute("select pg_stat_clear_snapshot()")
            .unwrap();
        observer
            .query_one(
                "select sessions from pg_stat_database where datname = $1",
                &[&db],
            )
            .unwrap()
            .get(0)
    };
    let (since, sessions_before, ok_before) = (
        Instant::now(),
        sessions(&mut observer),
        tick_count(cluster, &db, "q_ok"),
    );
    wait_for(&daemon, "a 20 s window", || {
        since.elapsed().as_secs() >= 20 && tick_count(cluster, &db, "q_ok") > ok_before + 20
    });
    let new_sessions = sessions(&mut observer) - sessions_before;
    check(
        &daemon,
        new_sessions <= 5,
        &format!("{new_sessions} new sessions in 20 s"),
    );
    let output = daemon.output();
    let label = format!("[{db}]: ");
    let complaints =
        lines_with(&output, &[&label, " ERROR "]) + lines_with(&output, &[&label, " WARNING "]);
    check(
        &daemon,
        complaints <= 5,
        &format!("{complaints} ERROR/WARNING lines"),
    );
    for queue in ["q_noticks", "q_noevents"] {
        check(
            &daemon,
            lines_with(&output, &[&format!("ticker failed for queue {queue}")]) == 1,
            &format!("{queue} named once"),
        );
    }
    check(
        &daemon,
        !output.contains("pgq is gone"),
        "a broken queue taken for a missing pgq",
    );
}
