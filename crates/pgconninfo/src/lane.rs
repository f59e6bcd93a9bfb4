//! A connection's socket shared by tokio-postgres' connection task and a direct lane
//! for one hot statement.
//!
//! Every query through tokio-postgres' `Client` goes through a channel to the
//! connection's task, which writes it, reads the reply, decodes each message and sends
//! it back through a second channel: two task hand-offs and a dozen allocations for a
//! one-row reply. For a statement a caller runs many times a second (a ticker), the
//! [`Lane`] writes the pre-encoded query itself and reads the reply straight off the
//! socket, in the caller's task.
//!
//! The socket stays one: the connection task reads and writes it through [`Shared`]
//! whenever no lane exchange is in progress; during one, the task's reads and writes
//! wait (its waker is kept and woken when the exchange ends). Taking the lane needs
//! `&mut Lane`, and the caller holds no `Client` call in flight meanwhile, so the
//! protocol stays in step: an exchange starts with the server idle and ends after its
//! `ReadyForQuery`. An exchange that does not end that way (an I/O error, an
//! unexpected message, a future dropped half-way) leaves the socket broken for both:
//! the connection task then fails, and the caller must reconnect.
//!
//! Not over TLS: the lane speaks the protocol in clear, so a connection that uses TLS
//! has no lane.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::error::SqlState;

use crate::dial::Socket;

/// Who may use the socket now.
enum Holder {
    /// tokio-postgres' connection task.
    Driver,
    /// A lane exchange.
    Lane,
    /// An exchange ended half-way: the protocol is out of step for everybody.
    Broken,
}

struct Inner {
    stream: Socket,
    holder: Holder,
    /// The connection task's waker, kept while it waited for an exchange to end.
    parked: Option<Waker>,
    /// The waker the connection task last waited to read with: an exchange's reads
    /// take the socket's read interest, and give it back to this waker at the end, so
    /// the task still sees the server close the connection while the session is idle.
    reader: Option<Waker>,
}

type Cell = Arc<Mutex<Inner>>;

fn lock(cell: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

fn broken() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the connection's protocol is out of step after an interrupted exchange",
    )
}

/// The connection task's side of the socket: the stream itself while no lane exchange
/// is in progress.
pub(crate) struct Shared(Cell);

impl Shared {
    /// The socket, and the lane onto it.
    pub(crate) fn new(stream: Socket) -> (Shared, Lane) {
        let cell = Arc::new(Mutex::new(Inner {
            stream,
            holder: Holder::Driver,
            parked: None,
            reader: None,
        }));
        let lane = Lane {
            cell: cell.clone(),
            buf: Vec::new(),
        };
        (Shared(cell), lane)
    }

    /// Runs `io` on the stream when the connection task holds it.
    fn driver<T>(
        &self,
        cx: &mut Context<'_>,
        io: impl FnOnce(&mut Inner, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut inner = lock(&self.0);
        match inner.holder {
            Holder::Driver => io(&mut inner, cx),
            Holder::Lane => {
                inner.parked = Some(cx.waker().clone());
                Poll::Pending
            }
            Holder::Broken => Poll::Ready(Err(broken())),
        }
    }
}

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.driver(cx, |inner, cx| {
            let read = Pin::new(&mut inner.stream).poll_read(cx, buf);
            if read.is_pending()
                && !inner
                    .reader
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.reader = Some(cx.waker().clone());
            }
            read
        })
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.driver(cx, |inner, cx| {
            Pin::new(&mut inner.stream).poll_write(cx, buf)
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.driver(cx, |inner, cx| Pin::new(&mut inner.stream).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.driver(cx, |inner, cx| {
            Pin::new(&mut inner.stream).poll_shutdown(cx)
        })
    }
}

/// A statement for the lane, encoded once as a simple-protocol `Query` message.
#[derive(Debug, Clone)]
pub struct SimpleQuery(Vec<u8>);

impl SimpleQuery {
    /// Encodes `sql`; fails when it holds a NUL byte.
    pub fn new(sql: &str) -> io::Result<SimpleQuery> {
        if sql.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a query must not hold a NUL byte",
            ));
        }
        let length = i32::try_from(4 + sql.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
        let mut message = Vec::with_capacity(1 + 4 + sql.len() + 1);
        message.push(b'Q');
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(sql.as_bytes());
        message.push(0);
        Ok(SimpleQuery(message))
    }
}

/// Why a lane exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// The server reported an error. The connection is usable again unless the
    /// SQLSTATE says it ended (a FATAL error, then the socket closed: later exchanges
    /// fail with [`LaneError::Lost`]).
    #[error("{0}")]
    Server(ServerError),
    /// The connection failed or the protocol is out of step: it must not be used again.
    #[error("{0}")]
    Lost(io::Error),
}

/// An error the server sent, with libpq's fields.
#[derive(Debug, Clone)]
pub struct ServerError {
    /// The SQLSTATE.
    pub code: SqlState,
    /// The primary message.
    pub message: String,
    /// The detail, if any.
    pub detail: Option<String>,
    /// The hint, if any.
    pub hint: Option<String>,
}

impl std::fmt::Display for ServerError {
    /// `SQLSTATE: message`, with the detail and hint kept.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.code(), self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl From<io::Error> for LaneError {
    fn from(error: io::Error) -> Self {
        LaneError::Lost(error)
    }
}

fn protocol(what: &'static str) -> LaneError {
    LaneError::Lost(io::Error::new(io::ErrorKind::InvalidData, what))
}

/// The first row of a reply, its columns read as text.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// A `DataRow` message's body: the column count, then each column's length (-1
    /// for NULL) and bytes.
    body: &'a [u8],
}

impl<'a> Row<'a> {
    /// Column `index` as text; `None` for NULL, a missing column or one that is not
    /// UTF-8.
    pub fn get(&self, index: usize) -> Option<&'a str> {
        let mut rest = self.body.get(2..)?;
        for at in 0..=index {
            let (length, after) = rest.split_first_chunk::<4>()?;
            let length = i32::from_be_bytes(*length);
            let Ok(length) = usize::try_from(length) else {
                // NULL: no bytes follow.
                rest = after;
                if at == index {
                    return None;
                }
                continue;
            };
            let value = after.get(..length)?;
            if at == index {
                return std::str::from_utf8(value).ok();
            }
            rest = &after[length..];
        }
        None
    }
}

/// Direct use of a connection's socket for one statement at a time.
pub struct Lane {
    cell: Cell,
    /// The last reply as read; its first row is returned as a slice of it.
    buf: Vec<u8>,
}

/// The socket held by an exchange; handed back to the connection task when dropped,
/// intact only when the exchange reached its end.
struct Lease<'a> {
    cell: &'a Mutex<Inner>,
    finished: bool,
}

impl<'a> Lease<'a> {
    /// Takes the socket from the connection task.
    fn take(cell: &'a Mutex<Inner>) -> Result<Lease<'a>, LaneError> {
        let mut inner = lock(cell);
        match inner.holder {
            Holder::Driver => inner.holder = Holder::Lane,
            Holder::Lane | Holder::Broken => return Err(LaneError::Lost(broken())),
        }
        Ok(Lease {
            cell,
            finished: false,
        })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut inner = lock(self.cell);
        inner.holder = if self.finished {
            Holder::Driver
        } else {
            Holder::Broken
        };
        let mut wake = inner.parked.take();
        if let Some(reader) = inner.reader.as_ref().filter(|_| wake.is_none()) {
            // The read interest back to the connection task, without polling it: woken
            // only if the socket is readable already (or broken).
            let ready = inner
                .stream
                .poll_read_ready(&mut Context::from_waker(reader));
            if ready.is_ready() || !self.finished {
                wake = Some(reader.clone());
            }
        }
        drop(inner);
        if let Some(waker) = wake {
            waker.wake();
        }
    }
}

impl Lane {
    /// Whether the connection's own task has ended (the server closed the connection,
    /// or the client was dropped): the lane then holds the last reference to the
    /// socket, and an exchange on it can only fail.
    pub fn is_orphaned(&self) -> bool {
        Arc::strong_count(&self.cell) == 1
    }

    /// Sends `query` and reads its whole reply: the first row, or `None` when the
    /// statement returned no rows. Notices, parameter changes and notifications in the
    /// reply are skipped; later rows and statements are read and dropped.
    pub async fn first_row(&mut self, query: &SimpleQuery) -> Result<Option<Row<'_>>, LaneError> {
        let mut lease = Lease::take(&self.cell)?;
        let cell = lease.cell;
        self.buf.clear();
        let mut written = 0;
        std::future::poll_fn(|cx| {
            let mut inner = lock(cell);
            while written < query.0.len() {
                match Pin::new(&mut inner.stream).poll_write(cx, &query.0[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Pin::new(&mut inner.stream).poll_flush(cx)
        })
        .await?;
        let mut row = None;
        let mut error = None;
        let mut at = 0;
        loop {
            while let Some((tag, body)) = frame(&self.buf[at..])? {
                let body = at + 5..at + 5 + body.len();
                at = body.end;
                match tag {
                    b'D' if row.is_none() && error.is_none() => row = Some(body),
                    b'E' => error = Some(server_error(&self.buf[body])),
                    b'Z' if at == self.buf.len() => {
                        lease.finished = true;
                        return match error {
                            Some(error) => Err(LaneError::Server(error)),
                            None => Ok(row.map(|body| Row {
                                body: &self.buf[body],
                            })),
                        };
                    }
                    b'Z' => return Err(protocol("the server sent more after the reply")),
                    b'G' | b'H' | b'W' => {
                        return Err(protocol("COPY is not supported on the lane"));
                    }
                    _ => {}
                }
            }
            self.buf.reserve(512);
            let read = std::future::poll_fn(|cx| {
                let mut inner = lock(cell);
                tokio_util::io::poll_read_buf(Pin::new(&mut inner.stream), cx, &mut self.buf)
            })
            .await;
            match (read, error.take()) {
                (Ok(0), None) => return Err(LaneError::Lost(io::ErrorKind::UnexpectedEof.into())),
                (Err(e), None) => return Err(LaneError::Lost(e)),
                // A FATAL error, then the server closed the connection: its SQLSTATE
                // tells why (57P01 at shutdown, say).
                (Ok(0) | Err(_), Some(error)) => return Err(LaneError::Server(error)),
                (Ok(_), kept) => error = kept,
            }
        }
    }
}

/// The first complete message in `buf`: its type and body; `None` until it is all read.
fn frame(buf: &[u8]) -> Result<Option<(u8, &[u8])>, LaneError> {
    let Some((&tag, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((length, rest)) = rest.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let length = usize::try_from(i32::from_be_bytes(*length))
        .ok()
        .filter(|length| *length >= 4)
        .ok_or_else(|| protocol("a message length out of range"))?;
    Ok(rest.get(..length - 4).map(|body| (tag, body)))
}

/// An `ErrorResponse` body: fields of a type byte and a NUL-terminated text, then a NUL.
fn server_error(mut body: &[u8]) -> ServerError {
    let mut error = ServerError {
        code: SqlState::INTERNAL_ERROR,
        message: String::new(),
        detail: None,
        hint: None,
    };
    while let Some((&kind, rest)) = body.split_first().filter(|(kind, _)| **kind != 0) {
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let value = String::from_utf8_lossy(&rest[..end]).into_owned();
        match kind {
            b'C' => error.code = SqlState::from_code(&value),
            b'M' => error.message = value,
            b'D' => error.detail = Some(value),
            b'H' => error.hint = Some(value),
            _ => {}
        }
        body = rest.get(end + 1..).unwrap_or_default();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message: type, length (itself included), body.
    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(4 + body.len() as i32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A DataRow body from columns (`None`: NULL).
    fn data_row(columns: &[Option<&str>]) -> Vec<u8> {
        let mut body = (columns.len() as i16).to_be_bytes().to_vec();
        for column in columns {
            match column {
                Some(text) => {
                    body.extend_from_slice(&(text.len() as i32).to_be_bytes());
                    body.extend_from_slice(text.as_bytes());
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        body
    }

    /// A query is encoded as libpq's: 'Q', length, text, NUL; a NUL inside is refused.
    #[test]
    fn query_encoding() {
        let query = SimpleQuery::new("select 1").unwrap();
        assert_eq!(query.0, message(b'Q', b"select 1\0"));
        assert!(SimpleQuery::new("select '\0'").is_err());
    }

    /// Messages are framed only once complete; a length below 4 is a protocol error.
    #[test]
    fn framing() {
        let whole = message(b'Z', b"I");
        assert_eq!(frame(&whole).unwrap(), Some((b'Z', &b"I"[..])));
        for cut in 0..whole.len() {
            assert_eq!(frame(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(frame(&[b'Z', 0, 0, 0, 3]).is_err());
        assert!(frame(&[b'Z', 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    /// Columns read as text in order; NULL, a column past the end and a truncated body
    /// read as `None`, never a panic.
    #[test]
    fn row_columns() {
        let body = data_row(&[Some("12"), None, Some(""), Some("x")]);
        let row = Row { body: &body };
        assert_eq!(row.get(0), Some("12"));
        assert_eq!(row.get(1), None);
        assert_eq!(row.get(2), Some(""));
        assert_eq!(row.get(3), Some("x"));
        assert_eq!(row.get(4), None);
        for cut in 0..body.len() {
            let row = Row { body: &body[..cut] };
            for index in 0..5 {
                let _ = row.get(index);
            }
        }
    }

    /// An ErrorResponse's SQLSTATE, message, detail and hint; other fields ignored;
    /// a body cut short reads what it has.
    #[test]
    fn error_fields() {
        let body = b"SERROR\0VERROR\0C22012\0Mdivision by zero\0Dsome detail\0Hsome hint\0\0";
        let error = server_error(body);
        assert_eq!(error.code.code(), "22012");
        assert_eq!(
            error.to_string(),
            "22012: division by zero (detail: some detail) (hint: some hint)"
        );
        let cut = server_error(&body[..20]);
        assert_eq!(cut.code.code(), "22012");
        assert_eq!(server_error(b"").code.code(), "XX000");
    }
}
