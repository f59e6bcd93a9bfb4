//! A database's retry and maintenance jobs, sharing one connection that stays open
//! (pgqd 3.5 opens a new one for every round), on their own schedules.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, error};

use crate::database::DbContext;
use crate::jobs::{Limits, maint, retry};
use crate::pg::{PgError, Session};
use crate::schedule::Backoff;

/// After a failed round, pgqd 3.5 tries again in 20 s; never later than the period.
const ERROR_RETRY: Duration = Duration::from_secs(20);

/// The housekeeping task of one database; stopped by its context's token.
pub struct Housekeeping {
    ctx: DbContext,
    session: Option<Session>,
    backoff: Backoff,
    next_retry: Instant,
    next_maint: Instant,
}

impl Housekeeping {
    pub fn new(ctx: DbContext) -> Housekeeping {
        let now = Instant::now();
        // Both run at once on start, as pgqd launches them when pgq is found.
        Housekeeping {
            ctx,
            session: None,
            backoff: Backoff::new(),
            next_retry: now,
            next_maint: now,
        }
    }

    pub async fn run(mut self) {
        loop {
            let wake = self.next_retry.min(self.next_maint);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.ctx.shutdown.cancelled() => return,
            }
            if !self.ensure_session().await {
                return;
            }
            if self.session.is_some() && !self.turn().await {
                return;
            }
        }
    }

    /// Opens the connection if needed; on failure both jobs wait for the backoff.
    /// `false` means shutdown.
    async fn ensure_session(&mut self) -> bool {
        if self.session.as_ref().is_some_and(|s| !s.is_closed()) {
            return true;
        }
        self.session = None;
        match self.ctx.connect().await {
            None => false,
            Some(Ok(session)) => {
                self.ctx.reachable("housekeeping");
                self.backoff.reset();
                self.session = Some(session);
                true
            }
            Some(Err(e)) => {
                self.ctx.report("housekeeping", &e);
                let later = Instant::now() + self.backoff.next_delay();
                self.next_retry = self.next_retry.max(later);
                self.next_maint = self.next_maint.max(later);
                true
            }
        }
    }

    /// Runs whichever jobs are due. `false` means shutdown.
    async fn turn(&mut self) -> bool {
        let config = self.ctx.config();
        let Some(session) = self.session.take() else {
            return true;
        };
        let mut outcome = Outcome::Done;
        if self.next_retry <= Instant::now() {
            let limits = Limits {
                timeout: config.retry_timeout,
                shutdown: &self.ctx.shutdown,
            };
            let result = retry::round(&session, &limits, &self.ctx.stats)
                .await
                .map(|moved| {
                    debug!(job = "retry", "retry round moved {moved} events");
                });
            outcome = self.after("retry", retry::RETRY, result);
            self.next_retry = Instant::now() + self.delay(config.retry_period, outcome);
        }
        if !matches!(outcome, Outcome::Lost | Outcome::TimedOut)
            && self.next_maint <= Instant::now()
        {
            let limits = Limits {
                timeout: config.maint_timeout,
                shutdown: &self.ctx.shutdown,
            };
            let result = maint::round(&session, &limits).await.map(|report| {
                debug!(
                    job = "maint",
                    "maintenance round: {} operations, {} failed", report.operations, report.failed
                );
                self.ctx.stats.maint_done();
            });
            outcome = self.after("maint", "pgq.maint_operations()", result);
            self.next_maint = Instant::now() + self.delay(config.maint_period, outcome);
        }
        if !matches!(outcome, Outcome::Lost | Outcome::TimedOut) {
            self.session = Some(session);
        }
        !self.ctx.shutdown.is_cancelled()
    }

    /// Logs a failed round and says what it means for the connection.
    fn after(&mut self, job: &str, query: &str, result: Result<(), PgError>) -> Outcome {
        match result {
            Ok(()) => Outcome::Done,
            Err(PgError::Shutdown) => Outcome::Lost,
            Err(e) if e.is_connection_lost() => {
                self.ctx.lost(job, &e);
                Outcome::Lost
            }
            Err(e @ PgError::Timeout(_)) => {
                error!(job, query, "{job} round {e}; replacing the connection");
                Outcome::TimedOut
            }
            Err(e) => {
                error!(
                    job,
                    sqlstate = e.sqlstate(),
                    query,
                    "{job} round failed: {e}"
                );
                Outcome::Failed
            }
        }
    }

    /// When the job runs next: after its period, sooner after a failure.
    fn delay(&mut self, period: Duration, outcome: Outcome) -> Duration {
        match outcome {
            Outcome::Done => period,
            Outcome::Failed | Outcome::TimedOut => ERROR_RETRY.min(period),
            Outcome::Lost => self.backoff.next_delay().min(period),
        }
    }
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    /// A query failed; the connection is fine.
    Failed,
    /// The connection is gone (or shutdown arrived).
    Lost,
    /// A call overran its timeout and was cancelled; the connection is replaced.
    TimedOut,
}
