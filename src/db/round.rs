//! A maintenance round in progress and the routine that makes its calls, one after the
//! other on the second connection (`db/slow_lane.rs`), each to its end under the job's
//! timeout.

use std::collections::VecDeque;

use tracing::{debug, error};

use super::context::DbContext;
use crate::jobs::maint::{self, MAX_REPEAT, Operation};
use crate::jobs::{Job, Limits};
use crate::pg::{PgError, Session};

/// What one call of a round left.
pub enum Progress {
    /// A call was made; more may follow.
    Called,
    /// No operation is left.
    Finished,
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
    ) -> Progress {
        let Some(operation) = self.operations.front() else {
            return Progress::Finished;
        };
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
    pub fn done(&self, ctx: &DbContext) {
        let failed = self.failed;
        debug!(
            job = %Job::Maint,
            "maintenance round done on the second connection, {failed} operations failed"
        );
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
