//! Counters, kept in one place: pgqd's stats line and each database's state.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What a database task is doing, for logs now and for health and metrics later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    /// Connecting and checking for pgq.
    Probing,
    /// Connected, but the database has no pgq (or one too old); re-checked every check_period.
    NoPgq,
    /// The server is a hot standby; ticking starts after promotion.
    Standby,
    /// Ticking.
    Ticking,
    /// Waiting before reconnecting after an error.
    BackingOff,
    /// Another instance holds this database's leader lock and ticks it; this one waits.
    Follower,
}

/// Shared counters, monotonic (as Prometheus wants them); pgqd's stats line shows the
/// difference between two [`Stats::totals`].
#[derive(Debug, Default)]
pub struct Stats {
    ticks: AtomicU64,
    maint: AtomicU64,
    retry: AtomicU64,
    databases: Mutex<BTreeMap<String, DbStatus>>,
}

/// The last known state of one database.
#[derive(Debug, Clone, Copy)]
pub struct DbStatus {
    pub state: DbState,
    pub last_tick: Option<Instant>,
}

/// One stats line's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub ticks: u64,
    pub maint: u64,
    pub retry: u64,
}

impl Snapshot {
    /// The figures between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            ticks: self.ticks.saturating_sub(earlier.ticks),
            maint: self.maint.saturating_sub(earlier.maint),
            retry: self.retry.saturating_sub(earlier.retry),
        }
    }
}

impl std::fmt::Display for Snapshot {
    /// pgqd's stats line, kept exactly since people parse it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{ticks: {}, maint: {}, retry: {}}}",
            self.ticks, self.maint, self.retry
        )
    }
}

impl Stats {
    /// One successful ticker round in `db`.
    pub fn ticked(&self, db: &str) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        self.update(db, |s| {
            s.state = DbState::Ticking;
            s.last_tick = Some(Instant::now());
        });
    }

    /// One completed maintenance round.
    pub fn maint_done(&self) {
        self.maint.fetch_add(1, Ordering::Relaxed);
    }

    /// Events moved back by `pgq.maint_retry_events()`.
    pub fn retried(&self, events: u64) {
        self.retry.fetch_add(events, Ordering::Relaxed);
    }

    pub fn set_state(&self, db: &str, state: DbState) {
        self.update(db, |s| s.state = state);
    }

    pub fn forget(&self, db: &str) {
        self.lock().remove(db);
    }

    /// The totals since start.
    pub fn totals(&self) -> Snapshot {
        Snapshot {
            ticks: self.ticks.load(Ordering::Relaxed),
            maint: self.maint.load(Ordering::Relaxed),
            retry: self.retry.load(Ordering::Relaxed),
        }
    }

    /// The most recent successful tick in any database.
    pub fn last_tick(&self) -> Option<Instant> {
        self.lock().values().filter_map(|s| s.last_tick).max()
    }

    pub fn databases(&self) -> BTreeMap<String, DbStatus> {
        self.lock().clone()
    }

    fn update(&self, db: &str, change: impl FnOnce(&mut DbStatus)) {
        let mut map = self.lock();
        // get_mut first: the entry API would allocate the key on every tick.
        if let Some(status) = map.get_mut(db) {
            change(status);
            return;
        }
        let mut status = DbStatus {
            state: DbState::Probing,
            last_tick: None,
        };
        change(&mut status);
        map.insert(db.to_string(), status);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DbStatus>> {
        self.databases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stats line has pgqd's exact shape and shows the figures since the last
    /// line, while the totals only grow.
    #[test]
    fn stats_line_from_monotonic_totals() {
        let stats = Stats::default();
        stats.ticked("a");
        stats.ticked("b");
        stats.maint_done();
        stats.retried(7);
        let first = stats.totals();
        assert_eq!(
            first.since(&Snapshot::default()).to_string(),
            "{ticks: 2, maint: 1, retry: 7}"
        );
        stats.ticked("a");
        let second = stats.totals();
        assert_eq!(
            second.since(&first).to_string(),
            "{ticks: 1, maint: 0, retry: 0}"
        );
        assert_eq!(second.ticks, 3);
        assert!(stats.last_tick().is_some());
        assert_eq!(stats.databases()["a"].state, DbState::Ticking);
    }
}
