//! Why connecting failed, in libpq's words: each host tried and the reason for each
//! attempt, never a password; and a tokio-postgres error as one line.

use std::error::Error as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::error::ConnInfoError;

/// Connecting failed. The message names each host tried and why, never a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Every host was tried and failed.
    #[error("{0}")]
    Hosts(HostFailures),
    /// No host could be tried (the settings could not be resolved, for example).
    #[error("{0}")]
    Other(String),
}

impl ConnectError {
    /// The SQLSTATE the server sent on the last attempt, if it got that far.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            ConnectError::Hosts(hosts) => hosts.0.last()?.reasons.last()?.code(),
            ConnectError::Other(_) => None,
        }
    }
}

impl From<ConnInfoError> for ConnectError {
    fn from(error: ConnInfoError) -> Self {
        ConnectError::Other(error.to_string())
    }
}

/// Why each host failed, in the order tried.
#[derive(Debug)]
pub struct HostFailures(pub(crate) Vec<Failure>);

impl std::fmt::Display for HostFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&all.join("; "))
    }
}

/// Why one host failed (two reasons when a TLS fallback was tried too).
#[derive(Debug)]
pub(crate) struct Failure {
    /// The server, as libpq names it.
    pub label: String,
    pub reasons: Vec<Reason>,
    /// The password file the password came from, for libpq's hint on a failed login.
    pub passfile: Option<PathBuf>,
    /// The trusted roots, named when the server certificate was refused.
    pub roots: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection to {} failed: ", self.label)?;
        let reasons: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        f.write_str(&reasons.join(", then: "))?;
        let login_failed = self
            .reasons
            .iter()
            .any(|r| r.code() == Some(&SqlState::INVALID_PASSWORD));
        if let Some(path) = self.passfile.as_ref().filter(|_| login_failed) {
            write!(f, " (password retrieved from file \"{}\")", path.display())?;
        }
        let refused = self.reasons.iter().any(Reason::is_certificate_refused);
        if let Some(roots) = self.roots.as_ref().filter(|_| refused) {
            write!(f, " (server certificate checked against {roots})")?;
        }
        Ok(())
    }
}

/// Why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Reason {
    #[error("{}", describe(.0))]
    Postgres(tokio_postgres::Error),
    /// The socket could not be opened (tokio-postgres' words for it).
    #[error("error connecting to server: {0}")]
    Dial(std::io::Error),
    #[error("timeout expired after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Session(&'static str),
}

impl Reason {
    fn code(&self) -> Option<&SqlState> {
        match self {
            Reason::Postgres(e) => e.code(),
            _ => None,
        }
    }

    /// Whether the server's certificate was refused: rustls' `InvalidCertificate`,
    /// which reaches tokio-postgres inside the `std::io::Error` of the TLS handshake.
    fn is_certificate_refused(&self) -> bool {
        let Reason::Postgres(error) = self else {
            return false;
        };
        let mut cause = error.source();
        while let Some(error) = cause {
            let tls = (error.downcast_ref::<std::io::Error>())
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            if matches!(tls, Some(rustls::Error::InvalidCertificate(_))) {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// A connection error in libpq's words where tokio-postgres has its own.
fn describe(error: &tokio_postgres::Error) -> String {
    if is_password_missing(error) {
        return "fe_sendauth: no password supplied".into();
    }
    describe_pg_error(error)
}

/// tokio-postgres' error when the server asks for a password and none is set: a
/// configuration error, no SQLSTATE, its cause the text "password missing". It has no
/// predicate for this, and the cause is a private string type that cannot be
/// downcast, so the cause's own text (not ours around it) is what tells.
fn is_password_missing(error: &tokio_postgres::Error) -> bool {
    error.code().is_none()
        && error
            .source()
            .is_some_and(|c| c.to_string() == "password missing")
}

/// A PostgreSQL error as one line: `SQLSTATE: message` when the server sent one,
/// else the client-side reason (connection refused, closed, timed out...).
pub fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}
