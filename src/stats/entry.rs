//! The write side of one database's entry: a handle owned by the database's task.
//! Only a handle writes an entry, only [`Stats::register`] creates one, and dropping
//! the handle removes it; so nothing a task does while it ends (its state, its
//! sessions closing) can bring a database that is gone back as a ghost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use prometheus_client::metrics::histogram::Histogram;

use super::{ConsumerStats, DbState, DbStatus, LastError, QueueStats, REPEAT_LOG_INTERVAL};
use super::{MaintResult, OtherTicker, Repeat, Stats, TickerResult};
use crate::jobs::Job;

/// One database's entry in [`Stats`], held by its task (behind an `Arc`, shared with
/// the task's sessions and its second-connection work).
#[derive(Debug)]
pub struct DbStats {
    stats: Arc<Stats>,
    name: String,
    /// Where the entry is in [`Stats`], and whose it is (see [`Stats::register`]).
    slot: usize,
    owner: u64,
}

impl DbStats {
    pub(super) fn new(stats: Arc<Stats>, name: &str, slot: usize, owner: u64) -> DbStats {
        DbStats {
            stats,
            name: name.to_string(),
            slot,
            owner,
        }
    }

    fn update(&self, change: impl FnOnce(&mut DbStatus)) {
        self.stats.update_owned(self.slot, self.owner, change);
    }

    /// The shared stats this entry belongs to (the totals of every database).
    pub fn all(&self) -> &Stats {
        &self.stats
    }

    /// How long `pgq.ticker()` calls take, all databases together.
    pub fn ticker_seconds(&self) -> &Histogram {
        &self.stats.ticker_seconds
    }

    /// One successful ticker round (`fallback`: queue by queue).
    pub fn ticked(&self, fallback: bool) {
        self.ticked_at(fallback, Instant::now(), SystemTime::now());
    }

    /// [`DbStats::ticked`] at a time read once for many calls (the ticker engine's
    /// replies read in one wake-up).
    pub fn ticked_at(&self, fallback: bool, at: Instant, wall: SystemTime) {
        self.stats.ticks.fetch_add(1, Ordering::Relaxed);
        self.update(|s| {
            s.state = DbState::Ticking;
            s.last_tick = Some(at);
            s.last_tick_wall = Some(wall);
            s.last_turn = s.last_tick;
            s.ticker_calls.add(if fallback {
                TickerResult::Fallback
            } else {
                TickerResult::Ok
            });
        });
    }

    /// A ticker call that failed (`timeout`: overran ticker_timeout).
    pub fn ticker_failed(&self, timeout: bool) {
        self.update(|s| {
            s.last_turn = Some(Instant::now());
            s.ticker_calls.add(if timeout {
                TickerResult::Timeout
            } else {
                TickerResult::Error
            });
        });
    }

    /// One completed maintenance round.
    pub fn maint_done(&self) {
        self.stats.maint.fetch_add(1, Ordering::Relaxed);
        self.update(|s| s.maint_rounds += 1);
    }

    /// One maintenance operation, done or failed.
    pub fn maint_operation(&self, ok: bool) {
        self.update(|s| {
            *s.maint_operations
                .entry(if ok {
                    MaintResult::Ok
                } else {
                    MaintResult::Error
                })
                .or_default() += 1;
        });
    }

    /// Events moved back by `pgq.maint_retry_events()`.
    pub fn retried(&self, events: u64) {
        self.stats.retry.fetch_add(events, Ordering::Relaxed);
        self.update(|s| s.retry_events += events);
    }

    /// An error of `job`: counted, kept as the last error, and rate-limited for the
    /// log (see [`Repeat`]).
    pub fn error(&self, job: Job, sqlstate: Option<&str>, message: &str) -> Repeat {
        let now = Instant::now();
        let code = sqlstate.unwrap_or_default().to_string();
        // A handle whose entry is gone logs (once a minute is the entry's to decide).
        let mut repeat = Repeat::Log { held_back: 0 };
        self.update(|s| {
            *s.errors.entry((job, code.clone())).or_default() += 1;
            s.last_error = Some(LastError {
                job,
                sqlstate: sqlstate.map(str::to_string),
                message: message.to_string(),
                at: SystemTime::now(),
            });
            repeat = next_repeat(s.repeats.entry((job, code)).or_insert((now, u64::MAX)), now);
        });
        repeat
    }

    /// An outage started.
    pub fn outage(&self) {
        self.update(|s| s.outages += 1);
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connections(&self, change: i64) {
        self.update(|s| s.connections += change);
    }

    /// The task's state; entering a state that should tick from one that should not
    /// starts the time in which a tick is expected.
    pub fn set_state(&self, state: DbState) {
        self.update(|s| {
            if s.state != state || s.state_since.is_none() {
                if state.should_tick() && !s.state.should_tick() {
                    s.expected_since = Some(Instant::now());
                    s.expected_since_wall = Some(SystemTime::now());
                }
                s.state = state;
                s.state_since = Some(Instant::now());
            }
        });
    }

    pub fn set_leader(&self, leader: Option<bool>) {
        self.update(|s| s.leader = leader);
    }

    /// The backend of the ticker session, as the ticker call reported it.
    pub fn set_ticker_backend(&self, pid: i32) {
        self.update(|s| s.ticker_backend = Some(pid));
    }

    /// Another client ticking the database (`None`: none seen at the last look).
    pub fn set_foreign_ticker(&self, other: Option<OtherTicker>) {
        self.update(|s| s.foreign_ticker = other);
    }

    /// PgQ's figures, replacing the previous ones (dropped queues disappear).
    pub fn set_queue_stats(&self, queues: Vec<QueueStats>, consumers: Vec<ConsumerStats>) {
        self.update(|s| {
            s.queues = queues;
            s.consumers = consumers;
            s.queue_stats_at = Some(SystemTime::now());
        });
    }
}

impl Drop for DbStats {
    /// The task has ended: its database leaves `/status`, `/metrics` and the health
    /// rules (unless a newer task for the same name owns the entry by now).
    fn drop(&mut self) {
        self.stats.remove_owned(&self.name, self.slot, self.owner);
    }
}

/// Whether an error whose line was last logged at `entry.0` (with `entry.1` held back
/// since; `u64::MAX`: never logged) is logged now, updating the entry.
fn next_repeat(entry: &mut (Instant, u64), now: Instant) -> Repeat {
    if entry.1 == u64::MAX || now.duration_since(entry.0) >= REPEAT_LOG_INTERVAL {
        let held_back = if entry.1 == u64::MAX { 0 } else { entry.1 };
        *entry = (now, 0);
        Repeat::Log { held_back }
    } else {
        entry.1 += 1;
        Repeat::HoldBack
    }
}
