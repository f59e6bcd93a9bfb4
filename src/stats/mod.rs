//! Counters and each database's state, kept in one place: pgqd's stats line, the
//! metrics, the health rules and `/status` all read them from here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::histogram::Histogram;

/// Identical errors (same database, job and SQLSTATE) are logged at most this often;
/// the ones in between are counted and the count is given with the next line.
pub const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);

mod state;

pub use state::DbState;

/// Shared counters, monotonic (as Prometheus wants them); pgqd's stats line shows the
/// difference between two [`Stats::totals`].
#[derive(Debug)]
pub struct Stats {
    ticks: AtomicU64,
    maint: AtomicU64,
    retry: AtomicU64,
    databases: Mutex<BTreeMap<String, DbStatus>>,
    /// How long `pgq.ticker()` calls take, all databases together.
    pub ticker_seconds: Histogram,
    /// The first database listing is done (readiness).
    discovered: AtomicBool,
    /// The supervisor's loop last went round (liveness).
    heartbeat: Mutex<Instant>,
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
        }
    }
}

/// What is known of one database.
#[derive(Debug, Clone, Default)]
pub struct DbStatus {
    pub state: DbState,
    /// When the state was entered.
    pub state_since: Option<Instant>,
    /// When the database was first seen.
    pub first_seen: Option<Instant>,
    pub last_tick: Option<Instant>,
    pub last_tick_wall: Option<SystemTime>,
    /// The last time a ticker call of the ticking loop ended (liveness of the task).
    pub last_turn: Option<Instant>,
    /// Ticker calls by result: `ok`, `fallback` (ticked queue by queue), `error`, `timeout`.
    pub ticker_calls: BTreeMap<&'static str, u64>,
    /// Maintenance operations by result: `ok`, `error`.
    pub maint_operations: BTreeMap<&'static str, u64>,
    pub retry_events: u64,
    /// Errors by job and SQLSTATE (`""` when the server sent none).
    pub errors: BTreeMap<(&'static str, String), u64>,
    pub outages: u64,
    pub connections: i64,
    pub last_error: Option<LastError>,
    /// Whether this instance holds the database's leader lock (`None`: no lock used).
    pub leader: Option<bool>,
    /// PgQ's own figures, collected every queue_stats_period.
    pub queues: Vec<QueueStats>,
    pub consumers: Vec<ConsumerStats>,
    pub queue_stats_at: Option<SystemTime>,
    /// Rate limiting of identical error lines: when each was last logged and how
    /// many were held back since.
    repeats: BTreeMap<(&'static str, String), (Instant, u64)>,
}

/// The most recent error of a database.
#[derive(Debug, Clone)]
pub struct LastError {
    pub job: &'static str,
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
    /// One successful ticker round in `db` (`fallback`: queue by queue).
    pub fn ticked(&self, db: &str, fallback: bool) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        self.update(db, |s| {
            s.state = DbState::Ticking;
            s.last_tick = Some(Instant::now());
            s.last_tick_wall = Some(SystemTime::now());
            s.last_turn = s.last_tick;
            *s.ticker_calls
                .entry(if fallback { "fallback" } else { "ok" })
                .or_default() += 1;
        });
    }

    /// A ticker call in `db` that failed (`timeout`: overran ticker_timeout).
    pub fn ticker_failed(&self, db: &str, timeout: bool) {
        self.update(db, |s| {
            s.last_turn = Some(Instant::now());
            *s.ticker_calls
                .entry(if timeout { "timeout" } else { "error" })
                .or_default() += 1;
        });
    }

    /// One completed maintenance round.
    pub fn maint_done(&self) {
        self.maint.fetch_add(1, Ordering::Relaxed);
    }

    /// One maintenance operation in `db`, done or failed.
    pub fn maint_operation(&self, db: &str, ok: bool) {
        self.update(db, |s| {
            *s.maint_operations
                .entry(if ok { "ok" } else { "error" })
                .or_default() += 1;
        });
    }

    /// Events moved back by `pgq.maint_retry_events()` in `db`.
    pub fn retried(&self, db: &str, events: u64) {
        self.retry.fetch_add(events, Ordering::Relaxed);
        self.update(db, |s| s.retry_events += events);
    }

    /// An error of `job` in `db`: counted, kept as the last error, and rate-limited
    /// for the log (see [`Repeat`]).
    pub fn error(
        &self,
        db: &str,
        job: &'static str,
        sqlstate: Option<&str>,
        message: &str,
    ) -> Repeat {
        let now = Instant::now();
        let code = sqlstate.unwrap_or_default().to_string();
        let mut repeat = Repeat::HoldBack;
        self.update(db, |s| {
            *s.errors.entry((job, code.clone())).or_default() += 1;
            s.last_error = Some(LastError {
                job,
                sqlstate: sqlstate.map(str::to_string),
                message: message.to_string(),
                at: SystemTime::now(),
            });
            let entry = s.repeats.entry((job, code)).or_insert((now, u64::MAX));
            if entry.1 == u64::MAX || now.duration_since(entry.0) >= REPEAT_LOG_INTERVAL {
                repeat = Repeat::Log {
                    held_back: if entry.1 == u64::MAX { 0 } else { entry.1 },
                };
                *entry = (now, 0);
            } else {
                entry.1 += 1;
            }
        });
        repeat
    }

    /// An outage of `db` started.
    pub fn outage(&self, db: &str) {
        self.update(db, |s| s.outages += 1);
    }

    /// A connection to `db` opened (`+1`) or closed (`-1`).
    pub fn connections(&self, db: &str, change: i64) {
        self.update(db, |s| s.connections += change);
    }

    pub fn set_state(&self, db: &str, state: DbState) {
        self.update(db, |s| {
            if s.state != state || s.state_since.is_none() {
                s.state = state;
                s.state_since = Some(Instant::now());
            }
        });
    }

    pub fn set_leader(&self, db: &str, leader: Option<bool>) {
        self.update(db, |s| s.leader = leader);
    }

    /// PgQ's figures of `db`, replacing the previous ones (dropped queues disappear).
    pub fn set_queue_stats(
        &self,
        db: &str,
        queues: Vec<QueueStats>,
        consumers: Vec<ConsumerStats>,
    ) {
        self.update(db, |s| {
            s.queues = queues;
            s.consumers = consumers;
            s.queue_stats_at = Some(SystemTime::now());
        });
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

    pub fn databases(&self) -> BTreeMap<String, DbStatus> {
        self.lock().clone()
    }

    /// Reads the databases' status without copying it.
    pub fn with_databases<T>(&self, read: impl FnOnce(&BTreeMap<String, DbStatus>) -> T) -> T {
        read(&self.lock())
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

    fn update(&self, db: &str, change: impl FnOnce(&mut DbStatus)) {
        let mut map = self.lock();
        // get_mut first: the entry API would allocate the key on every tick.
        if let Some(status) = map.get_mut(db) {
            change(status);
            return;
        }
        let mut status = DbStatus {
            first_seen: Some(Instant::now()),
            ..DbStatus::default()
        };
        change(&mut status);
        map.insert(db.to_string(), status);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, DbStatus>> {
        self.databases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Seconds since the Unix epoch, as metrics and `/status` show times.
pub fn unix(at: SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stats line has pgqd's exact shape and shows the figures since the last
    /// line, while the totals only grow.
    #[test]
    fn stats_line_from_monotonic_totals() {
        let stats = Stats::default();
        stats.ticked("a", false);
        stats.ticked("b", true);
        stats.maint_done();
        stats.retried("a", 7);
        let first = stats.totals();
        assert_eq!(
            first.since(&Snapshot::default()).to_string(),
            "{ticks: 2, maint: 1, retry: 7}"
        );
        stats.ticked("a", false);
        let second = stats.totals();
        assert_eq!(
            second.since(&first).to_string(),
            "{ticks: 1, maint: 0, retry: 0}"
        );
        assert_eq!(second.ticks, 3);
        let dbs = stats.databases();
        assert_eq!(dbs["a"].state, DbState::Ticking);
        assert_eq!(dbs["a"].ticker_calls["ok"], 2);
        assert_eq!(dbs["b"].ticker_calls["fallback"], 1);
        assert_eq!(dbs["a"].retry_events, 7);
    }

    /// Identical errors are counted every time but logged once per interval; a
    /// different SQLSTATE or job is logged at once.
    #[test]
    fn identical_errors_are_rate_limited() {
        let stats = Stats::default();
        let log = |job, code| stats.error("a", job, code, "boom");
        assert_eq!(log("ticker", Some("42501")), Repeat::Log { held_back: 0 });
        assert_eq!(log("ticker", Some("42501")), Repeat::HoldBack);
        assert_eq!(log("ticker", Some("42501")), Repeat::HoldBack);
        assert_eq!(log("ticker", Some("28P01")), Repeat::Log { held_back: 0 });
        assert_eq!(log("maint", Some("42501")), Repeat::Log { held_back: 0 });
        let dbs = stats.databases();
        assert_eq!(dbs["a"].errors[&("ticker", "42501".to_string())], 3);
        assert_eq!(dbs["a"].last_error.as_ref().unwrap().job, "maint");
    }
}
