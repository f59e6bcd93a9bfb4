//! A maintenance round in progress and the one routine that makes its calls, for both
//! lanes: inline between ticks (each call bounded; a VACUUM or a call over the bound
//! moves the rest aside) and on the second connection (every call to its end).

use std::collections::VecDeque;

use tracing::{debug, error};

use super::context::DbContext;
use crate::jobs::maint::{self, MAX_REPEAT, Operation};
use crate::jobs::{Job, Limits};
use crate::pg::{PgError, Session};

/// Where a round's calls run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// On the ticker's session between ticks. A VACUUM moves to the second connection,
    /// as does a call that overran the inline bound when `moves_on_timeout` (the bound
    /// is shorter than the job's own timeout).
    Inline { moves_on_timeout: bool },
    /// On the second connection, under the job's own timeout.
    Slow,
}

/// What one call of a round left.
pub enum Progress {
    /// A call was made; more may follow.
    Called,
    /// No operation is left.
    Finished,
    /// The rest of the round belongs on the second connection.
    Move,
    /// The connection is gone (or shutdown); the round ends here.
    Lost(PgError),
}

/// The operations of a maintenance round still to run.
pub struct MaintRound {
    operations: VecDeque<Operation>,
    /// Calls already made of the first operation (they count towards the cut-off).
    calls: usize,
    failed: usize,
}

impl MaintRound {
    pub fn new(operations: Vec<Operation>) -> MaintRound {
        MaintRound {
            operations: operations.into(),
            calls: 0,
            failed: 0,
        }
    }

    /// One call of the round's first operation. An operation that asks for more is
    /// called again on the next step, cut off after [`MAX_REPEAT`] calls (pgqd 3.5
    /// would loop forever); a failed one is counted and logged, and the round goes on.
    pub async fn step(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        limits: &Limits<'_>,
        lane: Lane,
    ) -> Progress {
        let Some(operation) = self.operations.front() else {
            return Progress::Finished;
        };
        let inline = matches!(lane, Lane::Inline { .. });
        if inline && matches!(operation, Operation::Vacuum { .. }) {
            return Progress::Move;
        }
        match maint::call(session, limits, operation).await {
            Ok(true) if self.calls + 1 < MAX_REPEAT => self.calls += 1,
            Ok(again) => {
                if again {
                    maint::log_cut_off(operation);
                }
                ctx.stats.maint_operation(true);
                self.next_operation();
            }
            Err(e) if e.ends_connection() => return Progress::Lost(e),
            Err(e)
                if e.is_timeout()
                    && lane
                        == (Lane::Inline {
                            moves_on_timeout: true,
                        }) =>
            {
                return Progress::Move;
            }
            Err(e) => {
                operation_failed(ctx, operation, &e);
                ctx.stats.maint_operation(false);
                self.failed += 1;
                self.next_operation();
            }
        }
        Progress::Called
    }

    /// The operation the round is at (for a failure's line).
    pub fn current(&self) -> Option<&Operation> {
        self.operations.front()
    }

    /// Counts the round as done and says so.
    pub fn done(&self, ctx: &DbContext, lane: Lane) {
        let failed = self.failed;
        match lane {
            Lane::Inline { .. } => debug!(
                job = %Job::Maint,
                "maintenance round done, {failed} operations failed"
            ),
            Lane::Slow => debug!(
                job = %Job::Maint,
                "maintenance round done on the second connection, {failed} operations failed"
            ),
        }
        ctx.stats.maint_done();
    }

    fn next_operation(&mut self) {
        self.operations.pop_front();
        self.calls = 0;
    }
}

/// Counts and logs a failed `pgq.maint_operations()` (identical failures once a
/// minute): the round cannot start.
pub fn planning_failed(ctx: &DbContext, error: &PgError) {
    ctx.report(Job::Maint, error, |repeated| {
        error!(
            job = %Job::Maint,
            sqlstate = error.sqlstate(),
            query = "pgq.maint_operations()",
            "maint round failed: {error}{repeated}"
        )
    });
}

/// Counts a failed maintenance operation and logs it (identical failures once a
/// minute); the rest of the round still runs.
fn operation_failed(ctx: &DbContext, operation: &Operation, error: &PgError) {
    ctx.report(Job::Maint, error, |repeated| {
        maint::log_failure(operation, error, repeated)
    });
}
