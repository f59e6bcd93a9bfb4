//! The one connection helper: open a session with a timeout, run a query with a
//! timeout, cancel it server-side when it overruns or shutdown arrives, and classify
//! errors by SQLSTATE in one place.

use std::time::Duration;

use pgconninfo::{Canceller, ConnectError, Lane, LaneError, SimpleQuery, Target};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, SimpleQueryMessage, SimpleQueryRow};
use tokio_util::sync::CancellationToken;

/// How long a server-side cancel request, and the wait for the cancelled query to
/// return, may take before the connection is simply dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// SQLSTATEs this daemon acts on, by name (PostgreSQL's errcodes.txt).
pub mod sqlstate {
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// At connect: the database does not accept connections now (`allow_connections`).
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const QUERY_CANCELED: &str = "57014";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// Class 08: connection exception.
    pub const CONNECTION_EXCEPTION_CLASS: &str = "08";
    /// Class 28: invalid authorization specification.
    pub const INVALID_AUTHORIZATION_CLASS: &str = "28";
}

/// Why a database call failed. Opaque: callers ask the predicates below, so the
/// classification lives here alone.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct PgError {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error("{0}")]
    Connect(ConnectError),
    #[error("{}", describe(.0))]
    Query(tokio_postgres::Error),
    /// A server error read on the session's lane.
    #[error("{0}")]
    Server(pgconninfo::ServerError),
    /// The connection failed under the session's lane.
    #[error("connection lost: {0}")]
    Lost(std::io::Error),
    #[error("timed out after {0:?}, cancelled")]
    Timeout(Duration),
    /// The call overran and was cancelled, but did not return within the grace
    /// period: the connection may still be busy.
    #[error("timed out after {0:?}, cancel unanswered")]
    TimeoutUnsettled(Duration),
    #[error("cancelled for shutdown")]
    Shutdown,
}

impl From<ConnectError> for PgError {
    fn from(error: ConnectError) -> Self {
        PgError {
            kind: Kind::Connect(error),
        }
    }
}

impl From<LaneError> for PgError {
    fn from(error: LaneError) -> Self {
        let kind = match error {
            LaneError::Server(e) => Kind::Server(e),
            LaneError::Lost(e) => Kind::Lost(e),
        };
        PgError { kind }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        PgError {
            kind: Kind::Query(error),
        }
    }
}

/// A server error as `SQLSTATE: message`, with libpq's detail and hint kept; other
/// errors with their cause.
fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return pgconninfo::describe_pg_error(error);
    };
    let mut text = format!("{}: {}", db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" (detail: {detail})"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!(" (hint: {hint})"));
    }
    text
}

impl PgError {
    /// Shutdown arrived while the call ran (it was cancelled server-side).
    pub fn shutdown() -> PgError {
        PgError {
            kind: Kind::Shutdown,
        }
    }

    /// A connection could not even be configured (`base_connstr` resolution failed).
    pub fn settings(error: impl std::fmt::Display) -> PgError {
        PgError {
            kind: Kind::Connect(ConnectError::Other(error.to_string())),
        }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&SqlState> {
        match &self.kind {
            Kind::Connect(e) => e.code(),
            Kind::Query(e) => e.code(),
            Kind::Server(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The SQLSTATE as text for logs, when the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        self.code().map(SqlState::code)
    }

    fn sqlstate_is(&self, codes: &[&str]) -> bool {
        self.sqlstate().is_some_and(|c| codes.contains(&c))
    }

    pub fn is_shutdown(&self) -> bool {
        matches!(self.kind, Kind::Shutdown)
    }

    /// The call overran its timeout and was cancelled server-side.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_) | Kind::TimeoutUnsettled(_))
    }

    /// The failure happened while connecting (no session was made).
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect(_))
    }

    /// The connection is gone or unusable: reconnect (quickly) rather than retry the query.
    /// Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown,
    /// cannot connect now), 53300 (too many connections), and no SQLSTATE at all
    /// (refused, reset, timed out).
    pub fn is_connection_lost(&self) -> bool {
        use sqlstate::*;
        match self.sqlstate() {
            None => !(self.is_shutdown() || self.is_timeout()),
            Some(code) => {
                code.starts_with(CONNECTION_EXCEPTION_CLASS)
                    || [
                        ADMIN_SHUTDOWN,
                        CRASH_SHUTDOWN,
                        CANNOT_CONNECT_NOW,
                        TOO_MANY_CONNECTIONS,
                    ]
                    .contains(&code)
            }
        }
    }

    /// The connection must not be used again: lost, or a call on it overran and its
    /// cancel went unanswered (it may still be busy), or shutdown cut the call short.
    pub fn ends_connection(&self) -> bool {
        self.is_connection_lost() || matches!(self.kind, Kind::TimeoutUnsettled(_) | Kind::Shutdown)
    }

    /// The server refuses us for reasons a fast retry will not fix: at connect, no
    /// such database, bad password, connections not allowed (55000); at any time, no
    /// permission (a revoked pgq_admin makes `pgq.ticker()` itself fail, for every
    /// queue alike). Try again only after check_period.
    pub fn is_refusal(&self) -> bool {
        use sqlstate::*;
        let Some(code) = self.sqlstate() else {
            return false;
        };
        code == INSUFFICIENT_PRIVILEGE
            || self.is_connect()
                && (code == INVALID_CATALOG_NAME
                    || code.starts_with(INVALID_AUTHORIZATION_CLASS)
                    || code == OBJECT_NOT_IN_PREREQUISITE_STATE)
    }

    /// The database does not exist (3D000): dropped, renamed, or never created.
    pub fn is_missing_database(&self) -> bool {
        self.sqlstate_is(&[sqlstate::INVALID_CATALOG_NAME])
    }

    /// A schema, function or table is missing: pgq may be gone, or only one queue's
    /// objects (a re-probe on the same connection tells which).
    pub fn is_missing_object(&self) -> bool {
        use sqlstate::*;
        self.sqlstate_is(&[
            INVALID_SCHEMA_NAME,
            UNDEFINED_FUNCTION,
            UNDEFINED_TABLE,
            UNDEFINED_OBJECT,
        ])
    }
}

/// One open connection with its cancel handle and its age.
pub struct Session {
    client: Client,
    canceller: Canceller,
    /// The socket's direct lane for [`Session::first_row`], when not encrypted.
    lane: Option<Lane>,
    opened: Instant,
    /// Runs when the session is dropped (the connection closes): a gauge's decrement.
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(hook) = self.on_drop.take() {
            hook();
        }
    }
}

impl Session {
    /// Connects, within the target's connect timeout (set on the target itself).
    pub async fn open(target: &Target) -> Result<Session, PgError> {
        let connected = target.connect().await?;
        Ok(Session {
            client: connected.client,
            canceller: connected.canceller,
            lane: connected.lane,
            opened: Instant::now(),
            on_drop: None,
        })
    }

    /// Runs `hook` when the session is dropped.
    pub fn on_drop(mut self, hook: impl FnOnce() + Send + Sync + 'static) -> Session {
        self.on_drop = Some(Box::new(hook));
        self
    }

    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs `sql` with text parameters in one round trip (no separate prepare).
    pub async fn query(
        &self,
        sql: &str,
        params: &[Option<&str>],
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Row>, PgError> {
        let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = params
            .iter()
            .map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT))
            .collect();
        let call = self.client.query_typed(sql, &typed);
        self.bounded(Box::pin(call), timeout, shutdown).await
    }

    /// Runs `sql` with the simple protocol: one round trip, whatever the number of
    /// statements in it (VACUUM must not be in a transaction block; the ticker call
    /// and the queue figures save the extended protocol's messages). Returns every
    /// statement's rows and command completions in order.
    pub async fn execute_simple(
        &self,
        sql: &str,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Vec<SimpleQueryMessage>, PgError> {
        let call = self.client.simple_query(sql);
        self.bounded(Box::pin(call), timeout, shutdown).await
    }

    /// Runs `query` (one statement, simple protocol) and returns its first row as
    /// text: on the session's lane when it has one (the caller's task reads the reply
    /// off the socket, no hand-off to the connection task), else as
    /// [`Session::execute_simple`]. For the statement run every tick.
    pub async fn first_row(
        &mut self,
        query: &Statement,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<FirstRow<'_>>, PgError> {
        let Session {
            client,
            canceller,
            lane,
            ..
        } = self;
        let Some(lane) = lane else {
            let call = Box::pin(client.simple_query(query.sql));
            let messages = bounded(canceller, call, timeout, shutdown);
            return Ok(messages.await?.into_iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(FirstRow::Simple(row)),
                _ => None,
            }));
        };
        // Not boxed: the lane's future is small, and this call runs every tick.
        let call = std::pin::pin!(lane.first_row(&query.encoded));
        let row = bounded(canceller, call, timeout, shutdown);
        Ok(row.await?.map(FirstRow::Lane))
    }

    /// The lane, lent out (to the ticker engine, `db/engine.rs`) until
    /// [`Session::put_lane`] or [`Session::finish_lent`] brings it back; `None` over TLS.
    pub fn take_lane(&mut self) -> Option<Lane> {
        self.lane.take()
    }

    pub fn put_lane(&mut self, lane: Lane) {
        self.lane = Some(lane);
    }

    /// Finishes a call started elsewhere on this session's lane (the ticker engine's,
    /// still running at the next tick) as [`Session::first_row`] would: cancelled
    /// server-side at `started + timeout` or at shutdown. The lane comes back with the
    /// call's end, unless the call had to be abandoned.
    pub async fn finish_lent<T>(
        &mut self,
        call: LentCall<T>,
        started: Instant,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<T, PgError> {
        let Session {
            canceller, lane, ..
        } = self;
        let call = std::pin::pin!(async {
            let (back, result) = call.await;
            *lane = Some(back);
            result
        });
        bounded_until(canceller, call, started + timeout, timeout, shutdown).await
    }

    /// [`bounded`] with this session's canceller.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>> + Unpin,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<T, PgError> {
        bounded(&self.canceller, call, timeout, shutdown).await
    }
}

/// Awaits a call; when it overruns `timeout` or shutdown arrives, the query is
/// cancelled server-side and the call awaited until it returns (briefly), so a query
/// is never abandoned half-way with the server still running it.
///
/// `call` comes pinned: tokio-postgres' query futures are large, and their callers box
/// them (inline they would be part of every idle task's future; one small allocation
/// per query is cheaper than kilobytes held per database); the lane's is small and is
/// pinned in place, without an allocation per tick.
async fn bounded<T, E: Into<PgError>>(
    canceller: &Canceller,
    call: impl std::future::Future<Output = Result<T, E>> + Unpin,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<T, PgError> {
    bounded_until(canceller, call, Instant::now() + timeout, timeout, shutdown).await
}

/// [`bounded`] for a call that started earlier: it overruns at `deadline`, and its
/// error says `timeout`.
async fn bounded_until<T, E: Into<PgError>>(
    canceller: &Canceller,
    mut call: impl std::future::Future<Output = Result<T, E>> + Unpin,
    deadline: Instant,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<T, PgError> {
    // Biased: the call first, and no random number drawn per call.
    let timed_out = tokio::select! {
        biased;
        result = &mut call => return result.map_err(Into::into),
        _ = tokio::time::sleep_until(deadline) => true,
        _ = shutdown.cancelled() => false,
    };
    // Boxed: a cancel request is a connection of its own (TLS included), rare, and
    // inline it would make every query's future kilobytes larger.
    let cancel = Box::pin(canceller.cancel());
    let _ = tokio::time::timeout(CANCEL_GRACE, cancel).await;
    // The call returns (cancelled, or finished just before the cancel arrived)
    // before the session is used again; a cancel that reaches an idle backend is
    // ignored by the server, so a settled session is safe to reuse.
    let settled = tokio::time::timeout(CANCEL_GRACE, call).await.is_ok();
    let kind = match (timed_out, settled) {
        (false, _) => Kind::Shutdown,
        (true, true) => Kind::Timeout(timeout),
        (true, false) => Kind::TimeoutUnsettled(timeout),
    };
    Err(PgError { kind })
}

/// The first row of a reply, as [`Session::first_row`] read it.
pub enum FirstRow<'a> {
    Lane(pgconninfo::Row<'a>),
    Simple(SimpleQueryRow),
}

impl FirstRow<'_> {
    /// Column `index` as text; `None` for NULL or a missing column.
    pub fn get(&self, index: usize) -> Option<&str> {
        match self {
            FirstRow::Lane(row) => row.get(index),
            FirstRow::Simple(row) => row.get(index),
        }
    }
}

/// A call started on a session's lane, which owns the lane until it ends.
pub type LentCall<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Lane, Result<T, LaneError>)> + Send>>;

/// A statement for [`Session::first_row`], encoded once for the lane.
pub struct Statement {
    sql: &'static str,
    encoded: SimpleQuery,
}

impl Statement {
    /// `sql` must not hold a NUL byte (a constant of this crate).
    pub fn new(sql: &'static str) -> Statement {
        let encoded = SimpleQuery::new(sql).expect("SQL constants hold no NUL byte");
        Statement { sql, encoded }
    }

    /// The statement as the lane sends it.
    pub fn encoded(&self) -> &SimpleQuery {
        &self.encoded
    }
}

/// The first row's first column as text; `None` for no row or NULL.
pub fn first_text(rows: &[Row]) -> Option<&str> {
    rows.first()?.try_get(0).ok().flatten()
}

/// The first column of the first row as an integer, the way pgqd reads it with
/// atoi() on the text value: numbers as such, text by its leading digits, else 0.
pub fn first_int(rows: &[Row]) -> i64 {
    let Some(row) = rows.first() else { return 0 };
    if row.is_empty() {
        return 0;
    }
    match *row.columns()[0].type_() {
        Type::INT2 => row
            .try_get::<_, Option<i16>>(0)
            .ok()
            .flatten()
            .map_or(0, i64::from),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(0)
            .ok()
            .flatten()
            .map_or(0, i64::from),
        Type::INT8 => row.try_get::<_, Option<i64>>(0).ok().flatten().unwrap_or(0),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(0)
            .ok()
            .flatten()
            .map_or(0, i64::from),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => atoi(
            &row.try_get::<_, Option<String>>(0)
                .ok()
                .flatten()
                .unwrap_or_default(),
        ),
        _ => 0,
    }
}

/// [`first_int`] for a simple-protocol result: the first column of the first row,
/// as text read with atoi.
pub fn simple_first_int(messages: &[SimpleQueryMessage]) -> i64 {
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map_or(0, atoi)),
            _ => None,
        })
        .unwrap_or(0)
}

/// C's atoi: optional blanks and sign, then leading digits.
pub fn atoi(text: &str) -> i64 {
    let text = text.trim_start();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().map_or(0, |v| sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// atoi reads leading digits like C.
    #[test]
    fn atoi_like_c() {
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi(" -3"), -3);
        assert_eq!(atoi("x1"), 0);
        assert_eq!(atoi(""), 0);
    }

    /// A timeout is not a lost connection; one whose cancel went unanswered, like
    /// shutdown, ends the connection.
    #[test]
    fn classification() {
        let timeout = PgError {
            kind: Kind::Timeout(Duration::from_secs(1)),
        };
        assert!(timeout.is_timeout() && !timeout.is_connection_lost());
        assert!(!timeout.ends_connection() && !timeout.is_refusal());
        let unsettled = PgError {
            kind: Kind::TimeoutUnsettled(Duration::from_secs(1)),
        };
        assert!(unsettled.is_timeout() && unsettled.ends_connection());
        let shutdown = PgError::shutdown();
        assert!(!shutdown.is_connection_lost() && shutdown.ends_connection());
        assert!(shutdown.sqlstate().is_none());
    }
}
