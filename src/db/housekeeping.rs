//! A database's retry and maintenance jobs. Retry rounds run between ticks on the
//! ticker's own session, one bounded call at a time, and only when plain SQL shows an
//! event is due; a call that overruns its inline bound is cancelled (each call is its
//! own transaction, so that is safe) and the rest of the round moves to a short-lived
//! second connection. Every maintenance round runs on such a connection: pgq's
//! maintenance functions, compiled and cached by the backend that calls them, would
//! otherwise cost the ticker's kept backend about 0.6 MB a database for its whole life.
//! pgqd 3.5 opens a new connection for every retry and every maintenance round.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

use super::context::{DbContext, End};
use super::foreign::ForeignWatch;
use super::slow_lane::{self, SlowWork};
use crate::config::{Config, ForeignTicker};
use crate::jobs::{Job, Limits, queue_stats, retry};
use crate::pg::Session;
use crate::schedule::{phase, spread_share};

/// After a failed round, pgqd 3.5 tries again in 20 s; never later than the period.
const ERROR_RETRY: Duration = Duration::from_secs(20);
/// The inline bound is half a ticker_period, but never below this.
const MIN_INLINE: Duration = Duration::from_millis(20);

/// The schedules and the rounds in progress of one database's housekeeping.
pub struct Housekeeping {
    next_retry: Instant,
    next_maint: Instant,
    next_queue_stats: Instant,
    /// The number of the supervisor's last look taken in, and what it told.
    look: u64,
    watch: ForeignWatch,
    /// A retry round is in progress (`pgq.maint_retry_events()` until it returns 0).
    retrying: bool,
    /// Work on a second connection; no inline housekeeping until it is done. It ends
    /// with the job whose round failed, if one did.
    slow: Option<JoinHandle<Option<Job>>>,
}

/// What one housekeeping call left to do.
enum Step {
    /// Nothing is due.
    Idle,
    /// More calls may be due.
    More,
}

impl Housekeeping {
    /// The retry check is due at once, as pgqd launches its rounds when pgq is found.
    /// The first maintenance round comes at the database's own place in `maint_period`
    /// (pgqd 3.5: at once): each round opens a connection, and a thousand databases
    /// found together would open a thousand at once, every period.
    pub fn new(name: &str, config: &Config) -> Housekeeping {
        let now = Instant::now();
        Housekeeping {
            next_retry: now,
            next_maint: now + config.maint_period.mul_f64(phase(name)),
            next_queue_stats: now,
            look: 0,
            watch: ForeignWatch::default(),
            retrying: false,
            slow: None,
        }
    }

    /// Runs due housekeeping calls on `session` while `budget` lasts. An error that
    /// ends the connection ends the ticking phase; other failures are logged here.
    pub async fn turn(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
        budget: Duration,
    ) -> Result<(), End> {
        if self.slow_work_running() {
            return Ok(());
        }
        if let Some(slow) = self.slow.take() {
            // Finished: the await returns at once.
            if let Ok(Some(job)) = slow.await {
                self.round_failed(job, config);
            }
        }
        let started = Instant::now();
        while started.elapsed() < budget && !ctx.shutdown.is_cancelled() {
            if let Step::Idle = self.step(ctx, session, config).await? {
                break;
            }
        }
        Ok(())
    }

    /// Waits for work on the second connection to end (the task is stopping: the work
    /// sees the same stop signal and cancels its call server-side), so that nothing of
    /// the database's task outlives it.
    pub async fn finish(&mut self) {
        if let Some(slow) = self.slow.take() {
            let _ = slow.await;
        }
    }

    /// Whether work runs on the second connection now.
    pub fn slow_work_running(&self) -> bool {
        self.slow.as_ref().is_some_and(|h| !h.is_finished())
    }

    async fn step(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<Step, End> {
        let now = Instant::now();
        if !self.retrying && self.next_retry <= now {
            self.retry_check(ctx, session, config).await?;
            return Ok(Step::More);
        }
        if self.retrying {
            self.retry_call(ctx, session, config).await?;
            return Ok(Step::More);
        }
        if self.next_maint <= now {
            self.next_maint = now + config.maint_period;
            self.move_to_slow_lane(ctx, SlowWork::Maint);
            return Ok(Step::Idle);
        }
        // The figures are only for the HTTP listener: without one nobody reads them,
        // and the server does no work for them.
        if self.next_queue_stats <= now && !config.http_listen.is_empty() {
            self.queue_stats(ctx, session, config).await?;
            return Ok(Step::More);
        }
        Ok(Step::Idle)
    }

    /// A round on the second connection failed: pgqd 3.5 tries again in 20 s.
    fn round_failed(&mut self, job: Job, config: &Config) {
        let again = Instant::now();
        match job {
            Job::Retry => self.next_retry = again + ERROR_RETRY.min(config.retry_period),
            _ => self.next_maint = again + ERROR_RETRY.min(config.maint_period),
        }
    }

    /// Starts a retry round if an event is due; else the next check is a period away.
    /// When the check itself fails (an old pgq, no privilege on its tables), the round
    /// starts anyway and `pgq.maint_retry_events()` reports what is wrong.
    async fn retry_check(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<(), End> {
        let limits = inline(ctx, config, config.retry_timeout).limits;
        match retry::due(session, &limits).await {
            Ok(false) => self.retry_done(config.retry_period),
            Ok(true) => self.retrying = true,
            Err(e) if e.ends_connection() => return Err(End::failed(Job::Retry)(e)),
            Err(_) => self.retrying = true,
        }
        Ok(())
    }

    async fn retry_call(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<(), End> {
        let Inline {
            limits,
            moves_on_timeout,
        } = inline(ctx, config, config.retry_timeout);
        match retry::call(session, &limits).await {
            Ok(0) => self.retry_done(config.retry_period),
            Ok(moved) => ctx.stats.retried(moved),
            Err(e) if e.ends_connection() => return Err(End::failed(Job::Retry)(e)),
            Err(e) if e.is_timeout() && moves_on_timeout => {
                self.retry_done(config.retry_period);
                self.move_to_slow_lane(ctx, SlowWork::Retry);
            }
            Err(e) => {
                ctx.report(Job::Retry, &e, |repeated| {
                    error!(
                        job = %Job::Retry,
                        sqlstate = e.sqlstate(),
                        query = retry::RETRY,
                        "retry round failed: {e}{repeated}"
                    )
                });
                self.retry_done(ERROR_RETRY.min(config.retry_period));
            }
        }
        Ok(())
    }

    /// Reads PgQ's queue and consumer figures for the metrics. Not worth a second
    /// connection: a call over the inline bound is given up until the next period.
    async fn queue_stats(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<(), End> {
        // Jittered per database, so a thousand databases do not read at once.
        let period = config.queue_stats_period.mul_f64(spread_share(&ctx.name));
        self.next_queue_stats = Instant::now() + period;
        let limits = inline(ctx, config, config.maint_timeout).limits;
        match queue_stats::collect(session, &limits).await {
            Ok((queues, consumers)) => ctx.stats.set_queue_stats(queues, consumers),
            Err(e) if e.ends_connection() => return Err(End::failed(Job::QueueStats)(e)),
            Err(e) => {
                ctx.report(Job::QueueStats, &e, |repeated| {
                    warn!(
                        job = %Job::QueueStats,
                        sqlstate = e.sqlstate(),
                        "reading the queue figures failed: {e}{repeated}"
                    )
                });
            }
        }
        Ok(())
    }

    /// Whether this pgqd leaves the database to another ticker now
    /// (`foreign_ticker = yield` and one was seen at the last look).
    pub fn yielding(&self, config: &Config) -> bool {
        config.foreign_ticker == ForeignTicker::Yield && self.watch.seeing()
    }

    /// Takes in the supervisor's latest look for other tickers, once per look (see
    /// `db/foreign.rs`); no query of its own.
    pub fn take_look(&mut self, ctx: &DbContext) {
        // Called every turn: only a look number compared unless a new look came.
        let seen = {
            let look = ctx.looks.borrow();
            if look.number == self.look {
                return;
            }
            self.look = look.number;
            look.sightings.get(&ctx.name).cloned().unwrap_or_default()
        };
        self.watch.saw(ctx, seen);
    }

    /// Until when nothing of housekeeping is due (the next retry check, maintenance
    /// round or queue reading); `None` while a retry or second-connection work runs.
    pub fn quiet_until(&self, config: &Config) -> Option<Instant> {
        if self.retrying || self.slow.is_some() {
            return None;
        }
        let mut until = self.next_retry.min(self.next_maint);
        if !config.http_listen.is_empty() {
            until = until.min(self.next_queue_stats);
        }
        Some(until)
    }

    /// Whether the latest look for other tickers has been taken.
    pub fn saw_latest_look(&self, ctx: &DbContext) -> bool {
        ctx.looks.borrow().number == self.look
    }

    fn retry_done(&mut self, next: Duration) {
        self.retrying = false;
        self.next_retry = Instant::now() + next;
    }

    /// Hands `work` to the second connection; no inline housekeeping until it ends.
    fn move_to_slow_lane(&mut self, ctx: &DbContext, work: SlowWork) {
        self.slow = Some(slow_lane::spawn(ctx, work));
    }
}

/// The limits of one inline call, and whether a timeout under them would mean the
/// work belongs on the second connection.
struct Inline<'a> {
    limits: Limits<'a>,
    /// The bound is half a ticker_period, shorter than the job's own timeout: a call
    /// that overruns it is cancelled and its work moved, not failed.
    moves_on_timeout: bool,
}

/// Limits for an inline call: half a ticker_period, or the job's own timeout when
/// that is shorter (then a timeout is the job's, not a reason to move it).
fn inline<'a>(ctx: &'a DbContext, config: &Config, job_timeout: Duration) -> Inline<'a> {
    let bound = (config.ticker_period / 2).max(MIN_INLINE);
    Inline {
        limits: Limits {
            timeout: bound.min(job_timeout),
            shutdown: &ctx.shutdown,
        },
        moves_on_timeout: job_timeout > bound,
    }
}
