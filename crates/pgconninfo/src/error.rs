//! Why a connection string (with the environment, a service file or the files TLS needs)
//! cannot be turned into a connection target. No message ever holds a secret: values
//! are shown only for known, non-secret keys.

use std::fmt;
use std::path::PathBuf;

/// Where a connection setting came from, for messages a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The connection string itself.
    Conninfo,
    /// A line of a connection service file.
    Service {
        /// The service file.
        file: PathBuf,
        /// Its line, from 1.
        line: usize,
    },
    /// A PG* environment variable.
    Env(&'static str),
    /// libpq's default, or the caller's ([`Defaults`](crate::Defaults)).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Conninfo => Ok(()),
            Origin::Service { file, line } => {
                write!(f, " (from service file \"{}\" line {line})", file.display())
            }
            Origin::Env(var) => write!(f, " (from {var})"),
            Origin::Default => f.write_str(" (default)"),
        }
    }
}

/// A connection string (with the environment and files it draws on) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    /// The text of a key=value string or a URI is malformed.
    #[error("invalid base_connstr: {0}")]
    Syntax(String),
    /// A key libpq does not know either.
    #[error("invalid connection option \"{key}\"{origin}")]
    UnknownKey {
        /// The key, unless it is no word (then it may be a secret, and is not shown).
        key: String,
        /// Where it was set.
        origin: Origin,
    },
    /// A key (or value) libpq knows but this implementation cannot honour.
    #[error("unsupported connection option \"{key}\"{origin}: {reason}")]
    Unsupported {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// Why it cannot be honoured, and what would be.
        reason: String,
    },
    /// A known key with a value it does not accept (secret values are never shown).
    #[error("invalid value {value} for connection option \"{key}\"{origin}: {reason}")]
    Value {
        /// The key.
        key: String,
        /// The value quoted, or `(hidden)` when it may be a secret.
        value: String,
        /// Where it was set.
        origin: Origin,
        /// What is wrong with it.
        reason: String,
    },
    /// Settings that do not fit together (host and port counts, sslmode and root cert...).
    #[error("{0}")]
    Conflict(String),
    /// A service file is missing the service or is malformed.
    #[error("{0}")]
    Service(String),
    /// A certificate, key or CRL file could not be used.
    #[error("{0}")]
    Tls(String),
}
