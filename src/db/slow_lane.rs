//! The second connection of a database's housekeeping: every maintenance round, and a
//! retry round whose call overran the inline bound, runs to its end on a short-lived
//! connection of its own, under the job's full timeout, and the connection closes with
//! it. A second kept connection per database would cost the server ~2 MB a database.

use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error};

use super::context::DbContext;
use super::round::{MaintRound, Progress, planning_failed};
use crate::jobs::maint;
use crate::jobs::{Job, Limits, retry};
use crate::pg::{PgError, Session};

/// Work for the second connection.
pub enum SlowWork {
    /// The rest of a retry round.
    Retry,
    /// A whole maintenance round, planned there.
    Maint,
}

impl SlowWork {
    fn job(&self) -> Job {
        match self {
            SlowWork::Retry => Job::Retry,
            SlowWork::Maint => Job::Maint,
        }
    }
}

/// Runs `work` to its end on a connection of its own, under the job's full timeout,
/// and closes that connection. The task ends with the job if its round failed (not for
/// a failed operation: the round goes on past it, as pgqd 3.5's does).
pub fn spawn(ctx: &DbContext, work: SlowWork) -> JoinHandle<Option<Job>> {
    let ctx = ctx.clone();
    let job = work.job();
    debug!(
        job = %job,
        "running the {job} round (or its rest) on a second connection"
    );
    let run = async move {
        match ctx.connect().await {
            Ok(session) => run(&ctx, &session, work).await.err().map(|()| job),
            Err(e) if e.is_shutdown() => None,
            Err(e) => {
                ctx.report(job, &e, |repeated| {
                    error!(
                        job = %job,
                        sqlstate = e.sqlstate(),
                        "cannot open a second connection for the {job} round: {e}{repeated}"
                    )
                });
                Some(job)
            }
        }
    };
    tokio::spawn(run.in_current_span())
}

/// The rest of a retry round, or a whole maintenance round, with the job's own
/// timeout; `Err` when the round failed (shutdown is not a failure).
async fn run(ctx: &DbContext, session: &Session, work: SlowWork) -> Result<(), ()> {
    let config = ctx.config();
    match work {
        SlowWork::Retry => {
            let limits = Limits {
                timeout: config.retry_timeout,
                shutdown: &ctx.shutdown,
            };
            let moved_back = |moved| ctx.stats.retried(moved);
            retry::round(session, &limits, moved_back)
                .await
                .map(drop)
                .map_err(|e| log_failure(ctx, Job::Retry, retry::RETRY, &e))
        }
        SlowWork::Maint => {
            let limits = Limits {
                timeout: config.maint_timeout,
                shutdown: &ctx.shutdown,
            };
            let round = match maint::operations(session, &limits).await {
                Ok(operations) => MaintRound::new(operations),
                Err(e) if e.is_shutdown() => return Ok(()),
                Err(e) => {
                    planning_failed(ctx, &e);
                    return Err(());
                }
            };
            run_maint(ctx, session, &limits, round).await
        }
    }
}

/// The round's calls, one after the other, until none is left.
async fn run_maint(
    ctx: &DbContext,
    session: &Session,
    limits: &Limits<'_>,
    mut round: MaintRound,
) -> Result<(), ()> {
    while !ctx.shutdown.is_cancelled() {
        match round.step(ctx, session, limits).await {
            Progress::Called => {}
            Progress::Finished => {
                round.done(ctx);
                return Ok(());
            }
            Progress::Lost(e) => {
                ctx.stats.maint_operation(false);
                let query = round.current().map(maint::describe).unwrap_or_default();
                log_failure(ctx, Job::Maint, &query, &e);
                return Err(());
            }
        }
    }
    Ok(())
}

/// Logs a round's failure (identical ones once a minute); shutdown is no failure.
fn log_failure(ctx: &DbContext, job: Job, query: &str, error: &PgError) {
    if error.is_shutdown() {
        return;
    }
    ctx.report(job, error, |repeated| {
        error!(
            job = %job,
            sqlstate = error.sqlstate(),
            query,
            "{job} round failed on the second connection: {error}{repeated}"
        )
    });
}
