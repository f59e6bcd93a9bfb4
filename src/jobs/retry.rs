//! One retry round: move events whose retry time has come back into their queues.

use crate::pg::{PgError, Session, first_int, simple_first_int};

use super::Limits;

/// Moves at most a handful of events per call; pgqd calls it again until it returns 0.
pub const RETRY: &str = "select * from pgq.maint_retry_events()";

/// Whether an event's retry time has come, the rows `pgq.maint_retry_events()` would
/// move. Plain SQL: most databases never retry an event, and the ticker's backend then
/// never compiles and caches that PL/pgSQL function (about 0.16 MB a database; pgqd
/// 3.5 pays a new session every retry_period instead).
pub const RETRY_DUE: &str = "select (exists (select 1 from pgq.retry_queue r join pgq.queue q on q.queue_id = r.ev_queue where r.ev_retry_after <= current_timestamp))::int";

/// The retry queue's size on disk: 0 when it has held no row since it was created or
/// last truncated by vacuum (the usual case). Read first, so that the ticker's backend
/// plans and caches no scan of the retry queue and its indexes (about 30 kB a
/// database) until an event is put back.
const RETRY_QUEUE_SIZE: &str = "select pg_catalog.pg_relation_size('pgq.retry_queue')";

/// Whether a retry round would move anything now.
pub async fn due(session: &Session, limits: &Limits<'_>) -> Result<bool, PgError> {
    let size = session
        .execute_simple(RETRY_QUEUE_SIZE, limits.timeout, limits.shutdown)
        .await?;
    if simple_first_int(&size) == 0 {
        return Ok(false);
    }
    let messages = session
        .execute_simple(RETRY_DUE, limits.timeout, limits.shutdown)
        .await?;
    Ok(simple_first_int(&messages) != 0)
}

/// One call of `pgq.maint_retry_events()`: the number of events it moved back.
pub async fn call(session: &Session, limits: &Limits<'_>) -> Result<u64, PgError> {
    let rows = session
        .query(RETRY, &[], limits.timeout, limits.shutdown)
        .await?;
    Ok(first_int(&rows).max(0) as u64)
}

/// Calls it until it returns 0; every count goes to `moved_back` as it comes, so a
/// round cut short still counts what it moved.
pub async fn round(
    session: &Session,
    limits: &Limits<'_>,
    mut moved_back: impl FnMut(u64),
) -> Result<u64, PgError> {
    let mut total = 0;
    loop {
        let moved = call(session, limits).await?;
        if moved == 0 || limits.shutdown.is_cancelled() {
            return Ok(total);
        }
        moved_back(moved);
        total += moved;
    }
}
