//! One ticker turn: `pgq.ticker()` for all queues, with a per-queue fallback so one
//! broken queue does not stop the others.

use std::sync::LazyLock;

use pgconninfo::SimpleQuery;

use crate::pg::{PgError, Session, Statement, atoi};

use super::Limits;

/// What pgqd 3.5 calls, once per ticker_period: pgq decides per queue whether a tick is
/// due. The backend's pid comes back in the same call, for the leader lock's pooler
/// guard (`db/leader.rs`), at no extra round trip.
pub const TICK_ALL: &str = "select pgq.ticker(), pg_backend_pid()";
/// [`TICK_ALL`], encoded once.
static TICK_ALL_STATEMENT: LazyLock<Statement> = LazyLock::new(|| Statement::new(TICK_ALL));
/// The queues `pgq.ticker()` would tick, in its order.
const ELIGIBLE_QUEUES: &str = "select queue_name from pgq.queue where not queue_external_ticker and not queue_ticker_paused order by queue_name";
/// The per-queue ticker; it applies the same "is a tick due" rules as the all-queue call.
const TICK_ONE: &str = "select pgq.ticker($1)";
/// Whether `pgq.ticker()` exists: tells "pgq is gone" from "one queue's sequence or
/// table is gone" when the ticker reports a missing object.
pub const TICKER_EXISTS: &str = "select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace where n.nspname = 'pgq' and p.proname = 'ticker'";

/// How a ticker turn went.
#[derive(Debug)]
pub enum TickOutcome {
    /// `pgq.ticker()` succeeded: the number of queues it ticked, and the pid of the
    /// backend that ran the call.
    All { queues: i64, backend: Option<i32> },
    /// `pgq.ticker()` failed (`cause`); each queue was ticked on its own and these failed.
    Fallback {
        cause: PgError,
        failed: Vec<(String, PgError)>,
        ticked: usize,
    },
}

/// Runs one turn. A lost connection, a timeout or missing pgq is returned as an
/// error; a failing queue is not, whatever its error: a queue whose tick or event
/// sequence was dropped makes `pgq.ticker()` raise 42P01 like a missing pgq would,
/// so a missing object counts as pgq's only when `pgq.ticker()` is really gone.
pub async fn tick(session: &mut Session, limits: &Limits<'_>) -> Result<TickOutcome, PgError> {
    // The simple protocol, as pgqd's PQexec: one message each way and fewer replies to
    // decode than the extended protocol's parse, bind, describe and execute; on the
    // session's lane, read in this task.
    let reply = session
        .first_row(&TICK_ALL_STATEMENT, limits.timeout, limits.shutdown)
        .await
        .map(|row| read(|i| row.as_ref()?.get(i)));
    settle(session, limits, reply).await
}

/// [`TICK_ALL`] as the lane sends it (the ticker engine's call, `db/engine.rs`).
pub fn lane_query() -> &'static SimpleQuery {
    TICK_ALL_STATEMENT.encoded()
}

/// A successful reply to [`TICK_ALL`], given its columns as text.
pub fn read<'a>(column: impl Fn(usize) -> Option<&'a str>) -> TickOutcome {
    TickOutcome::All {
        queues: column(0).map_or(0, atoi),
        backend: column(1).and_then(|v| v.parse().ok()),
    }
}

/// The turn's outcome from the reply to [`TICK_ALL`], made here or by the ticker
/// engine: when `pgq.ticker()` failed for a queue's sake, each queue ticked on its own.
pub async fn settle(
    session: &mut Session,
    limits: &Limits<'_>,
    reply: Result<TickOutcome, PgError>,
) -> Result<TickOutcome, PgError> {
    let cause = match reply {
        Ok(outcome) => return Ok(outcome),
        // No permission fails every queue alike: not a queue's failure.
        Err(e) if e.ends_connection() || e.is_timeout() || e.is_refusal() => return Err(e),
        Err(e) if e.is_missing_object() && !ticker_exists(session, limits).await? => {
            return Err(e);
        }
        Err(e) => e,
    };
    let rows = session
        .query(ELIGIBLE_QUEUES, &[], limits.timeout, limits.shutdown)
        .await?;
    let mut failed = Vec::new();
    let mut ticked = 0;
    for row in rows {
        let queue: String = row.get(0);
        match session
            .query(TICK_ONE, &[Some(&queue)], limits.timeout, limits.shutdown)
            .await
        {
            Ok(_) => ticked += 1,
            Err(e) if e.ends_connection() || e.is_timeout() => return Err(e),
            Err(e) => failed.push((queue, e)),
        }
    }
    Ok(TickOutcome::Fallback {
        cause,
        failed,
        ticked,
    })
}

async fn ticker_exists(session: &Session, limits: &Limits<'_>) -> Result<bool, PgError> {
    let rows = session
        .query(TICKER_EXISTS, &[], limits.timeout, limits.shutdown)
        .await?;
    Ok(!rows.is_empty())
}
