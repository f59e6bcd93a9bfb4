//! The ticking phase of a database task: `pgq.ticker()` at a fixed rate on the
//! ticker connection, replacing that connection after `connection_lifetime`, and
//! logging failing queues once each rather than every period.

use std::collections::BTreeSet;

use tracing::{debug, error, info, trace, warn};

use crate::config::Config;
use crate::database::{DbTask, State};
use crate::jobs::{Limits, ticker};
use crate::pg::{PgError, Session};
use crate::schedule::{Every, spread_share};

/// The ticking phase of a database task.
pub(crate) struct Ticking<'a> {
    task: &'a mut DbTask,
    session: Session,
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
}

impl<'a> Ticking<'a> {
    pub(crate) fn new(task: &'a mut DbTask, session: Session) -> Self {
        let lifetime_share = spread_share(&task.ctx.name);
        Ticking {
            task,
            session,
            failing: BTreeSet::new(),
            fallback_cause: None,
            timeouts: 0,
            replace: false,
            lifetime_share,
        }
    }

    pub(crate) async fn run(mut self) -> State {
        let config = self.task.ctx.config();
        let mut every = Every::on_grid(config.ticker_period);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = self.task.ctx.shutdown.cancelled() => return State::Stopped,
            }
            let config = self.task.ctx.config();
            every.set_period(config.ticker_period);
            if let Some(next) = self.turn(&config).await {
                return next;
            }
        }
    }

    /// One ticker turn; `Some(state)` ends the ticking phase.
    async fn turn(&mut self, config: &Config) -> Option<State> {
        if let Some(next) = self.renew_connection(config).await {
            return Some(next);
        }
        let limits = Limits {
            timeout: config.ticker_timeout,
            shutdown: &self.task.ctx.shutdown,
        };
        match ticker::tick(&self.session, &limits).await {
            Ok(outcome) => {
                if self.timeouts > 0 {
                    info!(
                        job = "ticker",
                        "ticker calls complete again after {} timeouts", self.timeouts
                    );
                    self.timeouts = 0;
                }
                self.record(outcome);
                None
            }
            Err(e) => self.failed(e),
        }
    }

    /// Replaces the ticker connection when it is old, closed or flagged after a
    /// timeout; `Some(state)` when that fails.
    async fn renew_connection(&mut self, config: &Config) -> Option<State> {
        let lifetime = config.connection_lifetime.mul_f64(self.lifetime_share);
        if !(self.replace || self.session.age() >= lifetime || self.session.is_closed()) {
            return None;
        }
        debug!(
            "replacing the ticker connection (age {:?})",
            self.session.age()
        );
        match self.task.ctx.connect().await {
            None => Some(State::Stopped),
            Some(Ok(session)) => {
                self.session = session;
                self.replace = false;
                None
            }
            Some(Err(e)) => Some(self.task.failed("ticker", e)),
        }
    }

    /// What a failed ticker turn means: `None` keeps ticking.
    fn failed(&mut self, error: PgError) -> Option<State> {
        match error {
            PgError::Shutdown => Some(State::Stopped),
            PgError::Timeout(_) => {
                // A lock on pgq.queue, say: the call was cancelled server-side. Stay in
                // the ticking state on a new connection; log the first of a streak.
                if self.timeouts == 0 {
                    error!(
                        job = "ticker",
                        query = ticker::TICK_ALL,
                        "ticker call {error}; replacing the connection"
                    );
                }
                self.timeouts += 1;
                self.replace = true;
                None
            }
            e if e.is_missing_object() => {
                warn!(
                    job = "ticker",
                    sqlstate = e.sqlstate(),
                    query = ticker::TICK_ALL,
                    "pgq is gone: {e}"
                );
                Some(State::Probing)
            }
            e => Some(self.task.failed("ticker", e)),
        }
    }

    fn record(&mut self, outcome: ticker::TickOutcome) {
        match outcome {
            ticker::TickOutcome::All(queues) => {
                trace!("ticker: {queues} queues ticked");
                if self.fallback_cause.take().is_some() {
                    info!(job = "ticker", "pgq.ticker() works again for all queues");
                }
                self.failing.clear();
                self.task.ctx.stats.ticked(&self.task.ctx.name);
            }
            ticker::TickOutcome::Fallback {
                cause,
                failed,
                ticked,
            } => {
                let cause_text = cause.to_string();
                if self.fallback_cause.as_deref() != Some(&cause_text) {
                    error!(
                        job = "ticker",
                        sqlstate = cause.sqlstate(),
                        query = ticker::TICK_ALL,
                        "ticker failed, ticking each queue on its own: {cause_text}"
                    );
                    self.fallback_cause = Some(cause_text);
                }
                self.note_failing_queues(failed);
                if ticked > 0 {
                    self.task.ctx.stats.ticked(&self.task.ctx.name);
                }
            }
        }
    }

    fn note_failing_queues(&mut self, failed: Vec<(String, PgError)>) {
        let now: BTreeSet<String> = failed.iter().map(|(q, _)| q.clone()).collect();
        for (queue, e) in &failed {
            if !self.failing.contains(queue) {
                error!(
                    job = "ticker",
                    queue = queue.as_str(),
                    sqlstate = e.sqlstate(),
                    "ticker failed for queue {queue}: {e}"
                );
            }
        }
        for queue in self.failing.difference(&now) {
            info!(
                job = "ticker",
                queue = queue.as_str(),
                "queue {queue} ticks again"
            );
        }
        self.failing = now;
    }
}
