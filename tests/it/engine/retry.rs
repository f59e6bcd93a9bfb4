//! The retry job: events put back with `pgq.event_retry` come back to the consumer.

use crate::harness::{Cluster, Daemon};

use super::{eager_queue, pgq_db, serving, ticking::stats_lines, wait_for};

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
