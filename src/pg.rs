//! The one connection helper: open a session with a timeout, run a query with a
//! timeout, cancel it server-side when it overruns or shutdown arrives, and classify
//! errors by SQLSTATE in one place.

use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

use crate::conninfo::{Canceller, ConnectError, Target};

/// How long a server-side cancel request, and the wait for the cancelled query to
/// return, may take before the connection is simply dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{}", crate::conninfo::describe_pg_error(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("timed out after {0:?}, cancelled")]
    Timeout(Duration),
    #[error("cancelled for shutdown")]
    Shutdown,
}

impl PgError {
    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            PgError::Connect(e) => e.code(),
            PgError::Query(e) => e.code(),
            _ => None,
        }
    }

    /// The SQLSTATE as text for logs (`-` when there is none).
    pub fn sqlstate(&self) -> &str {
        self.code().map_or("-", SqlState::code)
    }

    /// The connection is gone or unusable: reconnect (quickly) rather than retry the query.
    /// Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown,
    /// cannot connect now), 53300 (too many connections), and no SQLSTATE at all
    /// (refused, reset, timed out).
    pub fn is_connection_lost(&self) -> bool {
        match self.code() {
            None => !matches!(self, PgError::Shutdown | PgError::Timeout(_)),
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
            }
        }
    }

    /// The connection must not be used again: lost, or a call on it overran and was
    /// cancelled (it may still be busy), or shutdown cut the call short.
    pub fn ends_connection(&self) -> bool {
        self.is_connection_lost() || matches!(self, PgError::Timeout(_) | PgError::Shutdown)
    }

    /// The server refuses us for reasons a fast retry will not fix (no such database,
    /// bad password, no permission): try again only after check_period.
    pub fn is_refusal(&self) -> bool {
        matches!(self, PgError::Connect(_))
            && self.code().is_some_and(|c| {
                let c = c.code();
                c == "3D000" || c.starts_with("28") || c == "42501"
            })
    }

    /// pgq (or the called function) is not there: re-probe the database.
    pub fn is_missing_object(&self) -> bool {
        self.code()
            .is_some_and(|c| matches!(c.code(), "3F000" | "42883" | "42P01"))
    }
}

/// One open connection with its cancel handle and its age.
pub struct Session {
    client: Client,
    canceller: Canceller,
    opened: Instant,
}

impl Session {
    /// Connects, within the target's connect timeout (set on the target itself).
    pub async fn open(target: &Target) -> Result<Session, PgError> {
        let connected = target.connect().await?;
        Ok(Session {
            client: connected.client,
            canceller: connected.canceller,
            opened: Instant::now(),
        })
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
        self.bounded(call, timeout, shutdown).await
    }

    /// Runs one statement with the simple protocol (VACUUM, which must not be in a
    /// transaction block); returns the number of rows affected, if any.
    pub async fn execute_simple(
        &self,
        sql: &str,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Vec<SimpleQueryMessage>, PgError> {
        let call = self.client.simple_query(sql);
        self.bounded(call, timeout, shutdown).await
    }

    /// Awaits a call; when it overruns `timeout` or shutdown arrives, the query is
    /// cancelled server-side and the call awaited until it returns (briefly), so a
    /// query is never abandoned half-way with the server still running it.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<T, PgError> {
        // Boxed: tokio-postgres' query futures are large, and inline they would be part
        // of every idle task's future; one small allocation per query is cheaper than
        // kilobytes held per database.
        let mut call = Box::pin(call);
        let reason = tokio::select! {
            result = &mut call => return Ok(result?),
            _ = tokio::time::sleep(timeout) => PgError::Timeout(timeout),
            _ = shutdown.cancelled() => PgError::Shutdown,
        };
        // Boxed: a cancel request is a connection of its own (TLS included), rare, and
        // inline it would make every query's future kilobytes larger.
        let cancel = Box::pin(self.canceller.cancel());
        let _ = tokio::time::timeout(CANCEL_GRACE, cancel).await;
        let _ = tokio::time::timeout(CANCEL_GRACE, call).await;
        Err(reason)
    }
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
fn atoi(text: &str) -> i64 {
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

    /// A timeout is not a lost connection, but like shutdown it ends the connection.
    #[test]
    fn classification() {
        let timeout = PgError::Timeout(Duration::from_secs(1));
        assert!(!timeout.is_connection_lost() && timeout.ends_connection());
        assert!(!PgError::Shutdown.is_connection_lost() && PgError::Shutdown.ends_connection());
        assert!(!PgError::Timeout(Duration::from_secs(1)).is_refusal());
    }
}
