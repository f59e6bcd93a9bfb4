//! Faults of locks held by others: on `pgq.queue`, on a queue's event tables.

use crate::engine::check;
use crate::harness::Cluster;

use super::{Bounds, FAULT, Rig};

/// A transaction holding `pgq.queue` in access exclusive mode in one database: the
/// other databases keep ticking; the blocked ticker calls are cancelled after
/// ticker_timeout = 2 (one line for the streak); once the lock is released, that
/// database ticks again and its producer's events (blocked too) all arrive.
#[test]
fn lock_on_queue_table() {
    let cluster = Cluster::shared();
    let mut rig = Rig::start(cluster, 3, &["ticker_timeout = 2"]);
    let mut holder = cluster.connect(&rig.dbs[0]);
    rig.begin("lock on pgq.queue", &[0]);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("lock table pgq.queue in access exclusive mode")
        .unwrap();
    rig.hold(FAULT);
    lock.commit().unwrap();
    rig.end();
    let timeouts = rig.lines_about(0, &["ticker call timed out"]);
    let what = format!("{timeouts} 'ticker call timed out' lines for the locked database");
    check(&rig.daemon, timeouts == 1, &what);
    rig.finish(Bounds::DEFAULT);
}

/// A transaction holding the queue's event tables (`lock table pgq.event_1`, which
/// takes its partitions too) in one database: producers and maintenance there wait,
/// ticking goes on everywhere; after the release nothing is lost.
#[test]
fn lock_on_event_table() {
    let cluster = Cluster::shared();
    let mut rig = Rig::start(cluster, 3, &["ticker_timeout = 2"]);
    let table: String = rig
        .watch(0)
        .row("select 'pgq.event_' || queue_id from pgq.queue", &[])
        .expect("the queue's id")
        .get(0);
    let mut holder = cluster.connect(&rig.dbs[0]);
    rig.begin("lock on the event tables", &[]);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute(&format!("lock table {table} in access exclusive mode"))
        .unwrap();
    rig.hold(FAULT);
    let running = rig.daemon_running();
    check(&rig.daemon, running, "pgqd exited");
    lock.commit().unwrap();
    rig.end();
    rig.finish(Bounds::DEFAULT);
}
