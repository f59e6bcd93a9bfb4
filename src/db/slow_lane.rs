//! The second connection of a database's housekeeping: work too slow for the ticker's
//! session (a VACUUM, a call over the inline bound, or every round with
//! `round_connections`) runs to its end on a short-lived connection of its own, under
//! the job's full timeout, and the connection closes with it. A second kept connection
//! per database would cost the server ~2 MB a database.

use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error};

use super::context::DbContext;
use super::round::{Lane, MaintRound, Progress, planning_failed};
use crate::jobs::maint;
use crate::jobs::{Job, Limits, retry};
use crate::pg::{PgError, Session};

/// Work for the second connection.
pub enum SlowWork {
    Retry,
    /// A maintenance round, planned there (`round_connections`) or already begun.
    Maint(Option<MaintRound>),
}

impl SlowWork {
    fn job(&self) -> Job {
        match self {
            SlowWork::Retry => Job::Retry,
            SlowWork::Maint(_) => Job::Maint,
        }
    }
}

/// Runs `work` to its end on a connection of its own, under the job's full timeout,
/// and closes that connection.
pub fn spawn(ctx: &DbContext, work: SlowWork) -> JoinHandle<()> {
    let ctx = ctx.clone();
    let job = work.job();
    debug!(
        job = %job,
        "moving the rest of the round (or a whole round) to a second connection"
    );
    let run = async move {
        match ctx.connect().await {
            Ok(session) => run(&ctx, &session, work).await,
            Err(e) if e.is_shutdown() => {}
            Err(e) => {
                ctx.report(job, &e, |repeated| {
                    error!(
                        job = %job,
                        sqlstate = e.sqlstate(),
                        "cannot open a second connection for the {job} round: {e}{repeated}"
                    )
                });
            }
        }
    };
    tokio::spawn(run.in_current_span())
}

/// The rest of a round (or a whole round) with the job's own timeout.
async fn run(ctx: &DbContext, session: &Session, work: SlowWork) {
    let config = ctx.config();
    match work {
        SlowWork::Retry => {
            let limits = Limits {
                timeout: config.retry_timeout,
                shutdown: &ctx.shutdown,
            };
            let moved_back = |moved| ctx.stats.retried(moved);
            if let Err(e) = retry::round(session, &limits, moved_back).await {
                log_failure(ctx, Job::Retry, retry::RETRY, &e);
            }
        }
        SlowWork::Maint(round) => {
            let limits = Limits {
                timeout: config.maint_timeout,
                shutdown: &ctx.shutdown,
            };
            let round = match round {
                Some(round) => round,
                None => match maint::operations(session, &limits).await {
                    Ok(operations) => MaintRound::new(operations),
                    Err(e) if e.is_shutdown() => return,
                    Err(e) => return planning_failed(ctx, &e),
                },
            };
            run_maint(ctx, session, &limits, round).await;
        }
    }
}

/// The round's calls, one after the other, until none is left.
async fn run_maint(ctx: &DbContext, session: &Session, limits: &Limits<'_>, mut round: MaintRound) {
    while !ctx.shutdown.is_cancelled() {
        match round.step(ctx, session, limits, Lane::Slow).await {
            Progress::Called | Progress::Move => {}
            Progress::Finished => return round.done(ctx, Lane::Slow),
            Progress::Lost(e) => {
                ctx.stats.maint_operation(false);
                let query = round.current().map(maint::describe).unwrap_or_default();
                return log_failure(ctx, Job::Maint, &query, &e);
            }
        }
    }
}

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
