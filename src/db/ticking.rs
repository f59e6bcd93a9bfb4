//! The ticking phase of a database task: `pgq.ticker()` at a fixed rate on the
//! database's one connection while it holds the leader lock, the due housekeeping
//! after each call, the connection (and the lock with it) replaced after
//! `connection_lifetime`, and failing queues logged once each rather than every period.

use std::collections::BTreeSet;
use std::pin::Pin;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;
use tracing::{debug, error, info, trace, warn};

use super::context::{DbContext, End, Outage};
use super::engine::{Back, Loan, Terms};
use super::housekeeping::Housekeeping;
use super::leader::Leadership;
use crate::config::Config;
use crate::jobs::{Job, Limits, ticker};
use crate::pg::{PgError, Session};
use crate::schedule::{spread_share, ticker_spacing};
use crate::stats::DbState;

/// How a turn's lane came back from the ticker engine.
enum Lent {
    /// Not lent: something is due, or the session has no lane (TLS).
    No,
    /// At a tick, with no call made.
    Due,
    /// After the engine's call at this tick, read here.
    Called,
    /// After a call that ran past the next tick, finished here.
    Late,
}

/// The ticking phase of one database.
pub struct Ticking<'a> {
    ctx: &'a DbContext,
    session: Session,
    /// The leader lock as this phase holds it.
    leadership: Leadership,
    housekeeping: Housekeeping,
    /// Queues that failed in the per-queue fallback, so each is logged once.
    failing: BTreeSet<String>,
    /// The last all-queues error, logged once until ticking recovers.
    fallback_cause: Option<String>,
    /// Consecutive ticker calls that overran ticker_timeout.
    timeouts: u32,
    /// Open a new connection before the next call.
    replace: bool,
    /// This database's share of connection_lifetime (see [`spread_share`]), hashed once.
    lifetime_share: f64,
    /// At least one ticker call succeeded in this phase.
    ticked: bool,
    /// Leaving the database to another ticker (`foreign_ticker = yield`).
    yielded: bool,
    /// The database task's outage, ended by a tick that works.
    outage: Outage,
    /// The ticker session's backend as last written to the stats (written when it
    /// changes, not every tick).
    backend: Option<i32>,
}

impl<'a> Ticking<'a> {
    /// A ticking phase on `session`, which has not claimed the leader lock: the first
    /// turn claims it (with `leader_lock` on).
    pub fn new(ctx: &'a DbContext, session: Session) -> Self {
        Ticking::leading(ctx, session, Leadership::unclaimed())
    }

    /// A ticking phase on `session`, which stands with the leader lock as `leadership` says.
    pub fn leading(ctx: &'a DbContext, session: Session, leadership: Leadership) -> Self {
        Ticking {
            ctx,
            session,
            leadership,
            housekeeping: Housekeeping::new(&ctx.name, &ctx.config()),
            failing: BTreeSet::new(),
            fallback_cause: None,
            timeouts: 0,
            replace: false,
            lifetime_share: spread_share(&ctx.name),
            ticked: false,
            yielded: false,
            outage: Outage::default(),
            backend: None,
        }
    }

    /// Ticks until the connection is lost, pgq disappears or shutdown.
    pub async fn run(&mut self) -> End {
        let ctx = self.ctx;
        let mut every = ctx.clocks.every(ticker_spacing(ctx.config().ticker_period));
        // One wait for shutdown for the whole phase, not one registered and dropped
        // every tick.
        let mut stopped = std::pin::pin!(ctx.shutdown.cancelled());
        loop {
            tokio::select! {
                biased;
                _ = every.tick() => {}
                _ = &mut stopped => return End::Stopped,
            }
            loop {
                let config = ctx.config();
                every.set_spacing(ticker_spacing(config.ticker_period));
                if let Err(end) = self.turn(&config).await {
                    return end;
                }
                match self.lend(&config, stopped.as_mut()).await {
                    Ok(Lent::No) => break,
                    // Given back at a tick with no call made: this tick's turn, now.
                    Ok(Lent::Due) => every.mark_seen(),
                    // The engine made this tick's call.
                    Ok(Lent::Called) => {
                        every.mark_seen();
                        break;
                    }
                    // A call that ran past a tick: that tick's turn comes at once.
                    Ok(Lent::Late) => break,
                    Err(end) => return end,
                }
            }
        }
    }

    /// After a turn: lends the session's lane to the ticker engine (`db/engine.rs`)
    /// while nothing but the ticker call is due, and takes in how it came back.
    async fn lend(
        &mut self,
        config: &Config,
        stopped: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Result<Lent, End> {
        let ctx = self.ctx;
        let Some((until, backend)) = self.quiet_until(config) else {
            return Ok(Lent::No);
        };
        let Some(lane) = self.session.take_lane() else {
            return Ok(Lent::No);
        };
        let (back, returned) = oneshot::channel();
        let mut settings = ctx.settings.clone();
        settings.mark_unchanged();
        let mut looks = ctx.looks.clone();
        looks.mark_unchanged();
        let loan = Loan {
            lane,
            terms: Terms {
                until,
                backend,
                stats: ctx.stats.clone(),
                settings,
                looks,
                back,
            },
        };
        ctx.engines.lend(ticker_spacing(config.ticker_period), loan);
        let returned = tokio::select! {
            biased;
            returned = returned => returned,
            _ = stopped => return Err(End::Stopped),
        };
        let limits = Limits {
            timeout: config.ticker_timeout,
            shutdown: &ctx.shutdown,
        };
        let (started, reply, lent) = match returned {
            Ok(Back::Due(lane)) => {
                self.session.put_lane(lane);
                return Ok(Lent::Due);
            }
            Ok(Back::Done {
                lane,
                started,
                reply,
            }) => {
                self.session.put_lane(lane);
                (started, reply.map_err(PgError::from), Lent::Called)
            }
            Ok(Back::Busy { call, started }) => {
                let reply = self
                    .session
                    .finish_lent(call, started, limits.timeout, limits.shutdown)
                    .await;
                (started, reply, Lent::Late)
            }
            // The engine ended without giving the lane back: only when the runtime
            // shuts down.
            Err(_) => return Err(End::Stopped),
        };
        let result = ticker::settle(&mut self.session, &limits, reply).await;
        self.called(result, started)?;
        Ok(lent)
    }

    /// Until when nothing but the ticker call is due, and the backend the calls run
    /// on; `None` when something is (or the last turn did not end a plain success).
    fn quiet_until(&self, config: &Config) -> Option<(Instant, i32)> {
        let ctx = self.ctx;
        let plain = self.ticked
            && self.timeouts == 0
            && !self.replace
            && !self.yielded
            && self.fallback_cause.is_none()
            && self.failing.is_empty();
        // The turn's settings and look are still the latest.
        let current =
            std::ptr::eq(&*ctx.config(), config) && self.housekeeping.saw_latest_look(ctx);
        if !plain || !current || ctx.shutdown.is_cancelled() {
            return None;
        }
        let backend = self.backend?;
        let lifetime = config.connection_lifetime.mul_f64(self.lifetime_share);
        let now = Instant::now();
        let until = (self.housekeeping.quiet_until(config)?)
            .min(now + lifetime.saturating_sub(self.session.age()));
        // Not worth a loan for less than one more tick.
        (until > now + ticker_spacing(config.ticker_period)).then_some((until, backend))
    }

    /// Whether a ticker call has succeeded in this phase.
    pub fn ticked(&self) -> bool {
        self.ticked
    }

    /// The phase's session, for the follower phase after [`End::Follow`].
    pub fn into_session(self) -> Session {
        self.session
    }

    /// Continues the housekeeping schedules of an earlier phase (after a reconnect,
    /// retry and maintenance are due when their periods say, not at once).
    pub fn with_housekeeping(mut self, housekeeping: Housekeeping) -> Self {
        self.housekeeping = housekeeping;
        self
    }

    /// Continues the task's outage: a tick that works ends it.
    pub fn with_outage(mut self, outage: Outage) -> Self {
        self.outage = outage;
        self
    }

    /// The outage as this phase left it.
    pub fn take_outage(&mut self) -> Outage {
        std::mem::take(&mut self.outage)
    }

    /// The housekeeping schedules, for the next phase.
    pub fn take_housekeeping(&mut self) -> Housekeeping {
        let fresh = Housekeeping::new(&self.ctx.name, &self.ctx.config());
        std::mem::replace(&mut self.housekeeping, fresh)
    }

    /// One turn: the ticker call, then due housekeeping calls on the same session for
    /// at most half a ticker_period, so the next tick is never held up by more than
    /// one bounded call. `Err(End::Follow)` when another instance has the leader lock.
    pub async fn turn(&mut self, config: &Config) -> Result<(), End> {
        let started = Instant::now();
        self.renew_connection(config).await?;
        self.leadership
            .keep(self.ctx, &self.session, config)
            .await?;
        self.housekeeping.take_look(self.ctx);
        if self.yield_turn(config) {
            return Ok(());
        }
        self.tick(config).await?;
        if self.replace {
            return Ok(());
        }
        let budget = (config.ticker_period / 2).saturating_sub(started.elapsed());
        self.housekeeping
            .turn(self.ctx, &self.session, config, budget)
            .await
    }

    /// Whether this turn leaves the database to another ticker (`foreign_ticker =
    /// yield`): no tick and no housekeeping, only the look that tells when it stopped.
    fn yield_turn(&mut self, config: &Config) -> bool {
        let yielding = self.housekeeping.yielding(config);
        if yielding && !self.yielded {
            warn!(
                job = %Job::Watch,
                "foreign_ticker = yield: no ticks or housekeeping from here while the other ticker ticks this database"
            );
            self.ctx.stats.set_state(DbState::Yielding);
        } else if !yielding && self.yielded {
            info!(job = %Job::Watch, "ticking again: no other ticker seen");
            self.ctx.stats.set_state(DbState::Ticking);
        }
        self.yielded = yielding;
        yielding
    }

    async fn tick(&mut self, config: &Config) -> Result<(), End> {
        let limits = Limits {
            timeout: config.ticker_timeout,
            shutdown: &self.ctx.shutdown,
        };
        let started = Instant::now();
        let result = ticker::tick(&mut self.session, &limits).await;
        self.called(result, started)
    }

    /// What a ticker call that started at `started` came to, made here or by the
    /// engine.
    fn called(
        &mut self,
        result: Result<ticker::TickOutcome, PgError>,
        started: Instant,
    ) -> Result<(), End> {
        let stats = &self.ctx.stats;
        stats
            .ticker_seconds()
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) => {
                if self.timeouts > 0 {
                    info!(
                        job = %Job::Ticker,
                        "ticker calls complete again after {} timeouts", self.timeouts
                    );
                    self.timeouts = 0;
                }
                if let ticker::TickOutcome::All {
                    backend: Some(backend),
                    ..
                } = outcome
                {
                    self.leadership.check_backend(backend);
                    if self.backend != Some(backend) {
                        self.backend = Some(backend);
                        self.ctx.stats.set_ticker_backend(backend);
                    }
                }
                self.record(outcome);
                Ok(())
            }
            Err(e) => self.failed(e),
        }
    }

    /// Replaces the connection when it is old, closed or flagged after a timeout, and
    /// moves the leader lock to the new one (see [`Leadership::renew`]).
    async fn renew_connection(&mut self, config: &Config) -> Result<(), End> {
        let lifetime = config.connection_lifetime.mul_f64(self.lifetime_share);
        if self.session.is_closed() {
            // pg_terminate_backend, a server restart or a switchover; a failure to
            // reconnect is logged as an outage.
            warn!(
                job = %Job::Ticker,
                "the server closed the connection; reconnecting"
            );
        } else if self.replace {
            debug!("replacing the connection after a timeout");
        } else if self.session.age() >= lifetime {
            debug!(
                "replacing the connection after connection_lifetime (age {:?})",
                self.session.age()
            );
        } else {
            return Ok(());
        }
        let fresh = self.ctx.connect().await.map_err(End::failed(Job::Ticker))?;
        let old = std::mem::replace(&mut self.session, fresh);
        self.replace = false;
        self.leadership
            .renew(self.ctx, old, &self.session, config)
            .await
    }

    /// What a failed ticker call means: `Ok` keeps ticking.
    fn failed(&mut self, error: PgError) -> Result<(), End> {
        self.ctx.stats.ticker_failed(error.is_timeout());
        if error.is_timeout() {
            self.ctx.count_error(Job::Ticker, &error);
            // A lock on pgq.queue, say: the call was cancelled server-side. Stay in
            // the ticking state on a new connection; log the first of a streak.
            if self.timeouts == 0 {
                error!(
                    job = %Job::Ticker,
                    query = ticker::TICK_ALL,
                    "ticker call {error}; replacing the connection"
                );
            }
            self.timeouts += 1;
            self.replace = true;
            return Ok(());
        }
        if error.is_missing_object() && !error.ends_connection() {
            warn!(
                job = %Job::Ticker,
                sqlstate = error.sqlstate(),
                query = ticker::TICK_ALL,
                "pgq is gone: {error}"
            );
            return Err(End::Reprobe);
        }
        Err(End::failed(Job::Ticker)(error))
    }

    fn record(&mut self, outcome: ticker::TickOutcome) {
        match outcome {
            ticker::TickOutcome::All { queues, .. } => {
                trace!("ticker: {queues} queues ticked");
                if self.fallback_cause.take().is_some() {
                    info!(job = %Job::Ticker, "pgq.ticker() works again for all queues");
                }
                self.failing.clear();
                self.ticked = true;
                self.outage.end();
                self.ctx.stats.ticked(false);
            }
            ticker::TickOutcome::Fallback {
                cause,
                failed,
                ticked,
            } => {
                let cause_text = cause.to_string();
                self.ctx.count_error(Job::Ticker, &cause);
                if self.fallback_cause.as_deref() != Some(&cause_text) {
                    error!(
                        job = %Job::Ticker,
                        sqlstate = cause.sqlstate(),
                        query = ticker::TICK_ALL,
                        "ticker failed, ticking each queue on its own: {cause_text}"
                    );
                    self.fallback_cause = Some(cause_text);
                }
                self.note_failing_queues(failed);
                if ticked > 0 {
                    self.ticked = true;
                    self.outage.end();
                    self.ctx.stats.ticked(true);
                }
            }
        }
    }

    fn note_failing_queues(&mut self, failed: Vec<(String, PgError)>) {
        let now: BTreeSet<String> = failed.iter().map(|(q, _)| q.clone()).collect();
        for (queue, e) in &failed {
            self.ctx.count_error(Job::Ticker, e);
            if !self.failing.contains(queue) {
                error!(
                    job = %Job::Ticker,
                    queue = queue.as_str(),
                    sqlstate = e.sqlstate(),
                    "ticker failed for queue {queue}: {e}"
                );
            }
        }
        for queue in self.failing.difference(&now) {
            info!(
                job = %Job::Ticker,
                queue = queue.as_str(),
                "queue {queue} ticks again"
            );
        }
        self.failing = now;
    }
}
