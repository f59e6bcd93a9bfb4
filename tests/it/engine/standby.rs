//! A hot standby: pgqd waits quietly and starts ticking once the server is promoted.

use std::time::Duration;

use crate::harness::{Cluster, Daemon, poll};

use super::{all_ticks, check, eager_queue, lines_with, pgq_db, serving, wait_for};

/// Against a streaming hot standby the daemon logs one line that it waits for
/// promotion and then nothing at WARNING or ERROR (pgqd 3.5 logs a failed ticker call
/// every period) and makes no ticker calls (its session on the standby, sampled for
/// two seconds, never shows `pgq.ticker()`); after the primary is stopped and the
/// standby promoted, it logs the promotion and new ticks appear on the promoted server.
#[test]
fn standby_waits_quietly_then_ticks_after_promotion() {
    let primary = Cluster::start();
    let db = pgq_db(&primary, "standby");
    eager_queue(&primary, &db, "q");
    let standby = Cluster::standby_of(&primary);
    let daemon = Daemon::start(&serving(&standby, &[&db], &["ticker_period = 0.2"]));
    wait_for(&daemon, "the hot standby line", || {
        daemon.output().contains("hot standby")
    });

    let ticks_on_standby = all_ticks(&standby, &db);
    // Ten ticker periods of sampling the daemon's last statement on the standby: a
    // ticker call would stay there until the next statement.
    let mut observer = standby.connect("postgres");
    let mut statements = std::collections::BTreeSet::new();
    poll(Duration::from_secs(2), || {
        observer
            .batch_execute("select pg_stat_clear_snapshot()")
            .unwrap();
        for row in observer
            .query(
                "select query from pg_stat_activity where application_name = 'pgqd' and datname = $1",
                &[&db],
            )
            .unwrap()
        {
            statements.insert(row.get::<_, String>(0));
        }
        false
    });
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &["ERROR"]) == 0 && lines_with(&output, &["WARNING"]) == 0,
        "no errors or warnings while the server is a standby",
    );
    check(
        &daemon,
        lines_with(&output, &["hot standby"]) == 1,
        "one hot standby line",
    );
    check(
        &daemon,
        !statements.is_empty() && !statements.iter().any(|q| q.contains("pgq.ticker")),
        &format!("statements of the daemon on the standby: {statements:?}"),
    );

    primary.stop_server();
    standby.promote();
    wait_for(&daemon, "the promotion line", || {
        daemon.output().contains("server promoted")
    });
    wait_for(&daemon, "ticks on the promoted server", || {
        all_ticks(&standby, &db) > ticks_on_standby
    });
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &["ERROR"]) == 0,
        "no errors through the promotion",
    );
}
