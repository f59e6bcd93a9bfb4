//! Counters and each database's state, kept in one place: pgqd's stats line, the
//! metrics, the health rules and `/status` all read them from here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::histogram::Histogram;

/// Identical errors (same database, job and SQLSTATE) are logged at most this often;
/// the ones in between are counted and the count is given with the next line.
pub const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);

mod entry;
mod result;
mod state;

pub use entry::DbStats;
pub use result::{MaintResult, TickerCalls, TickerResult};
pub use state::DbState;

use crate::jobs::Job;

/// Shared counters, monotonic (as Prometheus wants them); pgqd's stats line shows the
/// difference between two [`Stats::totals`].
#[derive(Debug)]
pub struct Stats {
    ticks: AtomicU64,
    maint: AtomicU64,
    retry: AtomicU64,
    databases: Mutex<Entries>,
    /// How long `pgq.ticker()` calls take, all databases together.
    pub ticker_seconds: Histogram,
    /// The first database listing is done (readiness).
    discovered: AtomicBool,
    /// The supervisor's loop last went round (liveness).
    heartbeat: Mutex<Instant>,
    /// The next entry owner's id (see [`Stats::register`]).
    owners: AtomicU64,
    /// Database tasks alive now.
    tasks: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ticks: AtomicU64::new(0),
            maint: AtomicU64::new(0),
            retry: AtomicU64::new(0),
            databases: Mutex::default(),
            ticker_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            discovered: AtomicBool::new(false),
            heartbeat: Mutex::new(Instant::now()),
            owners: AtomicU64::new(1),
            tasks: AtomicU64::new(0),
        }
    }
}

/// The databases' entries: in slots, which a task's handle writes by index (no lookup
/// by name at every tick), and by name, which readers go through (in name order).
#[derive(Debug, Default)]
struct Entries {
    /// An empty slot (its entry removed) is taken by the next new database.
    slots: Vec<Option<DbStatus>>,
    by_name: BTreeMap<String, usize>,
}

/// The databases' entries as readers see them, in name order.
#[derive(Clone, Copy)]
pub struct Databases<'a>(&'a Entries);

impl<'a> Databases<'a> {
    pub fn iter(self) -> impl Iterator<Item = (&'a String, &'a DbStatus)> + 'a {
        let entries = self.0;
        entries
            .by_name
            .iter()
            .filter_map(|(name, &slot)| Some((name, entries.slots[slot].as_ref()?)))
    }

    pub fn values(self) -> impl Iterator<Item = &'a DbStatus> + 'a {
        self.iter().map(|(_, status)| status)
    }

    pub fn len(self) -> usize {
        self.0.by_name.len()
    }

    pub fn is_empty(self) -> bool {
        self.0.by_name.is_empty()
    }
}

/// What is known of one database.
#[derive(Debug, Clone, Default)]
pub struct DbStatus {
    pub state: DbState,
    /// When the state was entered.
    pub state_since: Option<Instant>,
    /// Since when this instance expects ticks: the task's start, or the last time the
    /// state turned into one that should tick (pgq installed, promotion, leadership
    /// taken). A database that never ticks is stale this long after it.
    pub expected_since: Option<Instant>,
    pub expected_since_wall: Option<SystemTime>,
    pub last_tick: Option<Instant>,
    pub last_tick_wall: Option<SystemTime>,
    /// The last time a ticker call of the ticking loop ended (liveness of the task).
    pub last_turn: Option<Instant>,
    /// Ticker calls by result.
    pub ticker_calls: TickerCalls,
    /// Maintenance operations by result.
    pub maint_operations: BTreeMap<MaintResult, u64>,
    /// Completed maintenance rounds (pgqd's stats line counts these as `maint`).
    pub maint_rounds: u64,
    pub retry_events: u64,
    /// Errors by job and SQLSTATE (`""` when the server sent none).
    pub errors: BTreeMap<(Job, String), u64>,
    pub outages: u64,
    pub connections: i64,
    pub last_error: Option<LastError>,
    /// Whether this instance holds the database's leader lock (`None`: no lock used).
    pub leader: Option<bool>,
    /// PgQ's own figures, collected every queue_stats_period.
    pub queues: Vec<QueueStats>,
    pub consumers: Vec<ConsumerStats>,
    pub queue_stats_at: Option<SystemTime>,
    /// Another client ticking the database, while one is seen.
    pub foreign_ticker: Option<OtherTicker>,
    /// The backend of this pgqd's ticker session (not another ticker).
    pub ticker_backend: Option<i32>,
    /// Rate limiting of identical error lines: when each was last logged and how
    /// many were held back since.
    repeats: BTreeMap<(Job, String), (Instant, u64)>,
    /// The task this entry belongs to (see [`Stats::register`]).
    owner: u64,
}

impl DbStatus {
    /// Since when this database has gone without a tick that this instance owes it:
    /// the last tick, or when ticks became expected if that is later. `None` when the
    /// database is not to be ticked by this instance now.
    pub fn unticked_since(&self) -> Option<Instant> {
        if !self.state.should_tick() {
            return None;
        }
        self.last_tick.max(self.expected_since)
    }

    /// [`DbStatus::unticked_since`] in wall-clock time, as the metrics show it.
    pub fn unticked_since_wall(&self) -> Option<SystemTime> {
        if !self.state.should_tick() {
            return None;
        }
        self.last_tick_wall.max(self.expected_since_wall)
    }
}

/// The most recent error of a database.
#[derive(Debug, Clone)]
pub struct LastError {
    pub job: Job,
    pub sqlstate: Option<String>,
    pub message: String,
    pub at: SystemTime,
}

/// One queue's figures, as `pgq.get_queue_info()` reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub name: String,
    pub ticker_lag: Option<f64>,
    pub idle_period: Option<f64>,
    pub new_events: Option<i64>,
    pub events_total: Option<i64>,
    pub last_rotation: Option<f64>,
    pub paused: bool,
}

/// Another client calling `pgq.ticker()` in a database (see `jobs::watch`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OtherTicker {
    pub pid: i32,
    pub application_name: String,
    /// The client's address, or `local` for a Unix socket.
    pub client: String,
    pub backend_start: String,
    pub query: String,
}

/// One consumer's figures, as `pgq.get_consumer_info()` reports them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ConsumerStats {
    pub queue: String,
    pub name: String,
    pub lag: Option<f64>,
    pub last_seen: Option<f64>,
    pub pending_events: Option<i64>,
}

/// Whether to log an error now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Log it; `held_back` identical lines were not logged since the last one.
    Log { held_back: u64 },
    /// An identical line was logged less than [`REPEAT_LOG_INTERVAL`] ago.
    HoldBack,
}

impl Repeat {
    /// `Some(suffix)` when the line is to be logged now: the suffix says how many
    /// identical lines were held back since the last one.
    pub fn log_now(self) -> Option<String> {
        matches!(self, Repeat::Log { .. }).then(|| self.suffix())
    }

    /// The suffix for a line logged after held-back repeats.
    pub fn suffix(self) -> String {
        match self {
            Repeat::Log { held_back } if held_back > 0 => {
                format!(" (repeated {held_back} times since the last report)")
            }
            _ => String::new(),
        }
    }
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
    /// Creates the entry of `db` for the task that serves it and hands that task the
    /// only way to write it. The entry disappears when the handle (and every clone of
    /// the `Arc` around it) is dropped, that is when the task has ended; a newer task
    /// for the same name replaces the entry, and the older handle then writes nothing.
    pub fn register(self: &Arc<Self>, db: &str) -> DbStats {
        let owner = self.owners.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let status = DbStatus {
            owner,
            expected_since: Some(now),
            expected_since_wall: Some(SystemTime::now()),
            maint_operations: MaintResult::ALL.iter().map(|r| (*r, 0)).collect(),
            ..DbStatus::default()
        };
        let mut entries = self.lock();
        let slot = match entries.by_name.get(db) {
            // The older task's handle keeps the slot's index but no longer its owner.
            Some(&slot) => slot,
            None => {
                let slot = entries.slots.iter().position(Option::is_none);
                let slot = slot.unwrap_or_else(|| {
                    entries.slots.push(None);
                    entries.slots.len() - 1
                });
                entries.by_name.insert(db.to_string(), slot);
                slot
            }
        };
        entries.slots[slot] = Some(status);
        drop(entries);
        DbStats::new(self.clone(), db, slot, owner)
    }

    /// Writes the entry in `slot` if it still belongs to `owner`.
    fn update_owned(&self, slot: usize, owner: u64, change: impl FnOnce(&mut DbStatus)) {
        if let Some(Some(status)) = self.lock().slots.get_mut(slot)
            && status.owner == owner
        {
            change(status);
        }
    }

    /// Removes the entry of `db` in `slot` if it still belongs to `owner`.
    fn remove_owned(&self, db: &str, slot: usize, owner: u64) {
        let mut entries = self.lock();
        if let Some(entry) = entries.slots.get_mut(slot)
            && entry.as_ref().is_some_and(|s| s.owner == owner)
        {
            *entry = None;
            entries.by_name.remove(db);
        }
    }

    /// The database tasks alive now (started and not yet joined), as the supervisor
    /// counts them.
    pub fn set_tasks(&self, tasks: usize) {
        self.tasks.store(tasks as u64, Ordering::Relaxed);
    }

    pub fn tasks(&self) -> u64 {
        self.tasks.load(Ordering::Relaxed)
    }

    /// The totals since start.
    pub fn totals(&self) -> Snapshot {
        Snapshot {
            ticks: self.ticks.load(Ordering::Relaxed),
            maint: self.maint.load(Ordering::Relaxed),
            retry: self.retry.load(Ordering::Relaxed),
        }
    }

    /// A copy of every database's status, by name.
    pub fn databases(&self) -> BTreeMap<String, DbStatus> {
        self.with_databases(|dbs| {
            dbs.iter()
                .map(|(name, status)| (name.clone(), status.clone()))
                .collect()
        })
    }

    /// This pgqd's ticker backends, for telling other tickers from its own.
    pub fn ticker_backends(&self) -> Vec<i32> {
        self.with_databases(|dbs| dbs.values().filter_map(|s| s.ticker_backend).collect())
    }

    /// Whether some database is left to another ticker now.
    pub fn any_yielding(&self) -> bool {
        self.with_databases(|dbs| dbs.values().any(|s| s.state == DbState::Yielding))
    }

    /// Reads the databases' status without copying it.
    pub fn with_databases<T>(&self, read: impl FnOnce(Databases<'_>) -> T) -> T {
        read(Databases(&self.lock()))
    }

    /// The first database listing is done.
    pub fn set_discovered(&self) {
        self.discovered.store(true, Ordering::Relaxed);
    }

    pub fn discovered(&self) -> bool {
        self.discovered.load(Ordering::Relaxed)
    }

    /// The supervisor's loop is alive.
    pub fn beat(&self) {
        *self.heartbeat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub fn last_beat(&self) -> Instant {
        *self.heartbeat.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.databases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Seconds since the Unix epoch, as metrics and `/status` show times.
pub fn unix(at: SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests;
