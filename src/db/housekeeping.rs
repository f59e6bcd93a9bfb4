//! A database's retry and maintenance jobs, run between ticks on the ticker's own
//! session, one bounded call at a time. A call that overruns its inline bound is
//! cancelled (each call is its own transaction, so that is safe) and the rest of its
//! round moves to a short-lived second connection, as does every VACUUM. pgqd 3.5
//! opens a new connection for every round; we open one only for slow work, unless
//! `round_connections` asks for pgqd 3.5's way (every round on a connection of its
//! own, so the ticker's backend never holds the maintenance functions' caches).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

use super::context::{DbContext, End};
use super::foreign::ForeignWatch;
use super::round::{Lane, MaintRound, Progress, planning_failed};
use super::slow_lane::{self, SlowWork};
use crate::config::{Config, ForeignTicker};
use crate::jobs::{Job, Limits, maint, queue_stats, retry};
use crate::pg::Session;
use crate::schedule::spread_share;

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
    /// The maintenance round in progress.
    maint: Option<MaintRound>,
    /// Work moved to a second connection; no inline housekeeping until it is done.
    slow: Option<JoinHandle<()>>,
}

/// What one housekeeping call left to do.
enum Step {
    /// Nothing is due.
    Idle,
    /// More calls may be due.
    More,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Housekeeping::new()
    }
}

impl Housekeeping {
    /// Both jobs are due at once, as pgqd launches them when pgq is found.
    pub fn new() -> Housekeeping {
        let now = Instant::now();
        Housekeeping {
            next_retry: now,
            next_maint: now,
            next_queue_stats: now,
            look: 0,
            watch: ForeignWatch::default(),
            retrying: false,
            maint: None,
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
        if self.slow.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        self.slow = None;
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
        if config.round_connections != 0 {
            if let Some(work) = self.due_round(now, config) {
                self.move_to_slow_lane(ctx, work);
                return Ok(Step::Idle);
            }
        } else if !self.retrying && self.next_retry <= now {
            self.retrying = true;
        }
        if self.retrying {
            self.retry_call(ctx, session, config).await?;
            return Ok(Step::More);
        }
        if self.maint.is_none() && self.next_maint <= now {
            self.plan_maint(ctx, session, config).await?;
            return Ok(Step::More);
        }
        if self.maint.is_some() {
            self.maint_call(ctx, session, config).await?;
            return Ok(Step::More);
        }
        // The figures are only for the HTTP listener: without one nobody reads them,
        // and the server does no work for them.
        if self.next_queue_stats <= now && !config.http_listen.is_empty() {
            self.queue_stats(ctx, session, config).await?;
            return Ok(Step::More);
        }
        Ok(Step::Idle)
    }

    /// With `round_connections`: the round now due, if any, scheduled as done (a
    /// failure is logged, and the next round comes a period later, as pgqd 3.5 does).
    fn due_round(&mut self, now: Instant, config: &Config) -> Option<SlowWork> {
        if self.next_retry <= now {
            self.next_retry = now + config.retry_period;
            Some(SlowWork::Retry)
        } else if self.next_maint <= now {
            self.next_maint = now + config.maint_period;
            Some(SlowWork::Maint(None))
        } else {
            None
        }
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

    fn retry_done(&mut self, next: Duration) {
        self.retrying = false;
        self.next_retry = Instant::now() + next;
    }

    async fn plan_maint(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<(), End> {
        let limits = inline(ctx, config, config.maint_timeout).limits;
        match maint::operations(session, &limits).await {
            Ok(operations) => {
                self.maint = Some(MaintRound::new(operations));
                Ok(())
            }
            Err(e) if e.ends_connection() => Err(End::failed(Job::Maint)(e)),
            Err(e) => {
                planning_failed(ctx, &e);
                self.next_maint = Instant::now() + ERROR_RETRY.min(config.maint_period);
                Ok(())
            }
        }
    }

    /// One call of the round's first operation; a VACUUM, or a call that overran the
    /// inline bound, moves the rest of the round to the second connection.
    async fn maint_call(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<(), End> {
        let Some(mut round) = self.maint.take() else {
            return Ok(());
        };
        let Inline {
            limits,
            moves_on_timeout,
        } = inline(ctx, config, config.maint_timeout);
        let lane = Lane::Inline { moves_on_timeout };
        match round.step(ctx, session, &limits, lane).await {
            Progress::Called => self.maint = Some(round),
            Progress::Finished => {
                round.done(ctx, lane);
                self.next_maint = Instant::now() + config.maint_period;
            }
            Progress::Move => self.maint_to_slow_lane(ctx, round, config),
            Progress::Lost(e) => return Err(End::failed(Job::Maint)(e)),
        }
        Ok(())
    }

    fn maint_to_slow_lane(&mut self, ctx: &DbContext, round: MaintRound, config: &Config) {
        self.next_maint = Instant::now() + config.maint_period;
        self.move_to_slow_lane(ctx, SlowWork::Maint(Some(round)));
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
