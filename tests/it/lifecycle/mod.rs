//! Databases that come and go: each leaves `/status`, `/metrics`, `/healthz`, the
//! task count and systemd's `STATUS=` as if it had never existed, and a model-based
//! test runs random sequences of what happens to a real cluster's databases.

mod model;
mod observe;

use crate::engine::{eager_queue, ident, pgq_db};
use crate::harness::{Cluster, unique};
use observe::{View, Watched};

/// The `[pgqd]` lines every daemon here runs with: short periods so that a change is
/// seen within seconds.
const PERIODS: &[&str] = &["check_period = 1", "ticker_period = 0.2"];

/// Waits until each of `dbs` ticks and the daemon is healthy.
fn wait_ticking(watched: &Watched, cluster: &Cluster, dbs: &[&str]) {
    watched.wait_for(cluster, &format!("{dbs:?} ticking"), |v: &View| {
        dbs.iter()
            .all(|d| v.databases.get(*d).map(String::as_str) == Some("ticking"))
            && v.healthz == 200
    });
}

/// Waits until nothing the daemon shows names `gone`, and the rest is consistent.
fn wait_gone(watched: &Watched, cluster: &Cluster, gone: &str, left: usize) {
    watched.wait_for(
        cluster,
        &format!("{gone} gone without a trace"),
        |v: &View| {
            v.no_trace_of(gone) && v.tasks == left as u64 && v.healthz == 200 && v.consistent()
        },
    );
}

/// A database dropped with `drop database ... with (force)` while it ticks leaves
/// `/healthz` healthy, and `/status`, `/metrics`, the task count and `STATUS=` without
/// it, within check_period (plus the time to notice).
#[test]
fn dropped_database_leaves_no_trace() {
    let cluster = Cluster::start();
    let (keep, drop) = (pgq_db(&cluster, "keep"), pgq_db(&cluster, "dropped"));
    eager_queue(&cluster, &drop, "q");
    let watched = Watched::start(&cluster, &[]);
    wait_ticking(&watched, &cluster, &[&keep, &drop]);
    cluster.exec(
        "postgres",
        &format!("drop database {} with (force)", ident(&drop)),
    );
    // Left: the kept one and postgres (no pgq).
    wait_gone(&watched, &cluster, &drop, 2);
}

/// A database taken out of `database_list` by a reload (SIGHUP) disappears the same
/// way, and its sessions close.
#[test]
fn database_removed_from_the_list_leaves_no_trace() {
    let cluster = Cluster::start();
    let (keep, removed) = (pgq_db(&cluster, "keep"), pgq_db(&cluster, "removed"));
    let watched = Watched::start(&cluster, &[&format!("database_list = {keep}, {removed}")]);
    wait_ticking(&watched, &cluster, &[&keep, &removed]);
    watched.reload_to(&cluster, &[&format!("database_list = {keep}")]);
    wait_gone(&watched, &cluster, &removed, 1);
    watched.wait_for(&cluster, "no session left in the removed database", |v| {
        v.sessions_in(&removed) == 0
    });
}

/// A renamed database: the old name disappears everywhere, the new one appears and
/// ticks.
#[test]
fn renamed_database_is_served_under_its_new_name() {
    let cluster = Cluster::start();
    let old = pgq_db(&cluster, "old");
    let watched = Watched::start(&cluster, &[]);
    wait_ticking(&watched, &cluster, &[&old]);
    let new = unique("new");
    model::rename(&cluster, &old, &new);
    watched.wait_for(&cluster, "the new name ticking, the old one gone", |v| {
        v.no_trace_of(&old)
            && v.databases.get(&new).map(String::as_str) == Some("ticking")
            && v.healthz == 200
            && v.consistent()
    });
}
