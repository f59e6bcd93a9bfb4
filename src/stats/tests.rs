//! The stats entries' life (owner, handle, removal), the stats line and the error
//! rate limit.

use super::*;
use crate::jobs::Job;

/// The stats line has pgqd's exact shape and shows the figures since the last
/// line, while the totals only grow.
#[test]
fn stats_line_from_monotonic_totals() {
    let stats = Arc::new(Stats::default());
    let (a, b) = (stats.register("a"), stats.register("b"));
    a.ticked(false);
    b.ticked(true);
    a.maint_done();
    a.retried(7);
    let first = stats.totals();
    assert_eq!(
        first.since(&Snapshot::default()).to_string(),
        "{ticks: 2, maint: 1, retry: 7}"
    );
    a.ticked(false);
    let second = stats.totals();
    assert_eq!(
        second.since(&first).to_string(),
        "{ticks: 1, maint: 0, retry: 0}"
    );
    assert_eq!(second.ticks, 3);
    let dbs = stats.databases();
    assert_eq!(dbs["a"].state, DbState::Ticking);
    assert_eq!(dbs["a"].ticker_calls[&TickerResult::Ok], 2);
    assert_eq!(dbs["b"].ticker_calls[&TickerResult::Fallback], 1);
    assert_eq!(dbs["a"].retry_events, 7);
    assert_eq!(dbs["a"].maint_rounds, 1);
}

/// Identical errors are counted every time but logged once per interval; a
/// different SQLSTATE or job is logged at once.
#[test]
fn identical_errors_are_rate_limited() {
    let stats = Arc::new(Stats::default());
    let a = stats.register("a");
    let log = |job, code| a.error(job, code, "boom");
    assert_eq!(
        log(Job::Ticker, Some("42501")),
        Repeat::Log { held_back: 0 }
    );
    assert_eq!(log(Job::Ticker, Some("42501")), Repeat::HoldBack);
    assert_eq!(log(Job::Ticker, Some("42501")), Repeat::HoldBack);
    assert_eq!(
        log(Job::Ticker, Some("28P01")),
        Repeat::Log { held_back: 0 }
    );
    assert_eq!(log(Job::Maint, Some("42501")), Repeat::Log { held_back: 0 });
    let dbs = stats.databases();
    assert_eq!(dbs["a"].errors[&(Job::Ticker, "42501".to_string())], 3);
    assert_eq!(dbs["a"].last_error.as_ref().unwrap().job, Job::Maint);
}

/// An entry lives exactly as long as its handle: dropping it removes the database,
/// and a write through any handle after that (a session closing late) creates
/// nothing.
#[test]
fn an_entry_dies_with_its_handle() {
    let stats = Arc::new(Stats::default());
    let a = Arc::new(stats.register("a"));
    let session = a.clone();
    a.connections(1);
    drop(a);
    assert!(
        stats.databases().contains_key("a"),
        "a session still holds it"
    );
    session.connections(-1);
    session.set_state(DbState::Probing);
    drop(session);
    assert!(stats.databases().is_empty());
}

/// A newer task for the same name (a reconnect, a rename back) owns the entry from
/// its start: the older handle neither writes it nor removes it.
#[test]
fn a_newer_owner_replaces_the_entry() {
    let stats = Arc::new(Stats::default());
    let old = stats.register("a");
    old.connections(1);
    let new = stats.register("a");
    old.connections(5);
    old.set_state(DbState::BackingOff);
    drop(old);
    let dbs = stats.databases();
    assert_eq!(dbs["a"].connections, 0);
    assert_eq!(dbs["a"].state, DbState::Probing);
    drop(new);
    assert!(stats.databases().is_empty());
}

/// A handle whose slot has gone to another database (its newer owner ended, then a
/// new database took the slot) neither writes nor removes that database's entry.
#[test]
fn a_reused_slot_belongs_to_its_new_database() {
    let stats = Arc::new(Stats::default());
    let old = stats.register("a");
    let newer = stats.register("a");
    drop(newer);
    let b = stats.register("b");
    old.connections(5);
    old.ticked(false);
    drop(old);
    let dbs = stats.databases();
    assert_eq!(dbs.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(dbs["b"].connections, 0);
    assert_eq!(dbs["b"].ticker_calls[&TickerResult::Ok], 0);
    b.connections(1);
    let c = stats.register("c");
    c.connections(2);
    let dbs = stats.databases();
    assert_eq!(dbs.keys().collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!((dbs["b"].connections, dbs["c"].connections), (1, 2));
}

/// Every counter of a database exists at 0 from its task's start.
#[test]
fn counters_exist_from_the_start() {
    let stats = Arc::new(Stats::default());
    let _a = stats.register("a");
    let dbs = stats.databases();
    assert_eq!(dbs["a"].ticker_calls.len(), TickerResult::ALL.len());
    assert_eq!(dbs["a"].maint_operations.len(), MaintResult::ALL.len());
    assert!(dbs["a"].ticker_calls.values().all(|v| *v == 0));
}

/// A database that should tick and never has is owed a tick from its start; one
/// that turns from not-ticking (no pgq, standby) to ticking is owed one from then,
/// not from an old tick.
#[test]
fn ticks_are_owed_from_when_they_are_expected() {
    let stats = Arc::new(Stats::default());
    let a = stats.register("a");
    let start = stats.databases()["a"].unticked_since().unwrap();
    a.set_state(DbState::NoPgq);
    assert_eq!(stats.databases()["a"].unticked_since(), None);
    std::thread::sleep(Duration::from_millis(5));
    a.set_state(DbState::Probing);
    assert!(stats.databases()["a"].unticked_since().unwrap() > start);
    a.ticked(false);
    let dbs = stats.databases();
    assert_eq!(dbs["a"].unticked_since(), dbs["a"].last_tick);
}
