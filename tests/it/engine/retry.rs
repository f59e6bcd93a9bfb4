//! The retry job: events put back with `pgq.event_retry` come back to the consumer.

use crate::harness::{Cluster, Daemon};

use super::{check, eager_queue, pgq_db, serving, ticking::stats_lines, wait_for};

/// An event retried with 0 seconds comes back in a later batch with ev_retry = 1
/// (moved back by the daemon's `pgq.maint_retry_events()` round, retry_period = 1),
/// and the stats line counts it as `retry: 1`.
#[test]
fn retried_event_comes_back() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "retry");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client
        .batch_execute(
            "select pgq.register_consumer('q', 'c'); select pgq.insert_event('q', 'test', 'again')",
        )
        .unwrap();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &[
            "ticker_period = 0.2",
            "retry_period = 1",
            "stats_period = 1",
        ],
    ));
    let mut retried = false;
    let mut came_back = false;
    wait_for(&daemon, "the retried event back with ev_retry = 1", || {
        let Some(batch) = next_batch(&mut client) else {
            return false;
        };
        for row in client
            .query(
                "select ev_id, ev_retry from pgq.get_batch_events($1) where ev_data = 'again'",
                &[&batch],
            )
            .unwrap()
        {
            let (id, retry): (i64, Option<i32>) = (row.get(0), row.get(1));
            if retry.is_none() && !retried {
                client
                    .query("select pgq.event_retry($1, $2, 0)", &[&batch, &id])
                    .unwrap();
                retried = true;
            }
            came_back |= retry == Some(1);
        }
        client
            .query("select pgq.finish_batch($1)", &[&batch])
            .unwrap();
        came_back
    });
    wait_for(&daemon, "a stats line with retry: 1", || {
        stats_lines(&daemon.output())
            .iter()
            .any(|&(_, _, retry)| retry == 1)
    });
}

fn next_batch(client: &mut postgres::Client) -> Option<i64> {
    client
        .query_one("select pgq.next_batch('q', 'c')", &[])
        .unwrap()
        .get(0)
}

/// The retry check reads nothing of an empty retry queue: its size on disk (0) says
/// nothing is due, so the ticker's backend never plans a scan of it (nor caches its
/// plan). A retry queue that holds an event due later is scanned at every check: that
/// database shows the checks happen, the empty one that they do not scan.
#[test]
fn an_empty_retry_queue_is_checked_without_a_scan() {
    let cluster = Cluster::shared();
    let empty = pgq_db(cluster, "retry_empty");
    eager_queue(cluster, &empty, "q");
    let later = pgq_db(cluster, "retry_later");
    eager_queue(cluster, &later, "q");
    let mut client = cluster.connect(&later);
    // Each statement its own transaction: the tick must see the event committed.
    for sql in [
        "select pgq.register_consumer('q', 'c')",
        "select pgq.insert_event('q', 'test', 'later')",
        "select pgq.ticker()",
    ] {
        client.execute(sql, &[]).unwrap();
    }
    let batch = next_batch(&mut client).expect("a batch after the tick");
    let retried = client
        .execute(
            "select pgq.event_retry($1, ev_id, 3600) from pgq.get_batch_events($1)",
            &[&batch],
        )
        .unwrap();
    assert_eq!(retried, 1, "the event put back for an hour");
    client
        .query("select pgq.finish_batch($1)", &[&batch])
        .unwrap();
    let scans = |db: &str| -> i64 {
        cluster
            .connect(db)
            .query_one(
                "select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) from pg_stat_user_tables where relid = 'pgq.retry_queue'::regclass",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let (empty_before, later_before) = (scans(&empty), scans(&later));
    let daemon = Daemon::start(&serving(
        cluster,
        &[&empty, &later],
        &["retry_period = 1", "maint_period = 600"],
    ));
    wait_for(
        &daemon,
        "three checks scanning the retry queue that holds an event",
        || scans(&later) >= later_before + 3,
    );
    check(
        &daemon,
        scans(&empty) == empty_before,
        "no scan of the empty retry queue",
    );
}
