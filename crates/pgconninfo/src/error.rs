//! Why `base_connstr` (with the environment, a service file or the files TLS needs)
//! cannot be turned into a connection target. No message ever holds a secret: values
//! are shown only for known, non-secret keys.

use std::fmt;
use std::path::PathBuf;

/// Where a connection setting came from, for messages a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `base_connstr` itself.
    Conninfo,
    /// A line of a connection service file.
    Service { file: PathBuf, line: usize },
    /// A PG* environment variable.
    Env(&'static str),
    /// libpq's default (or the daemon's).
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

/// `base_connstr` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    /// The text of a key=value string or a URI is malformed.
    #[error("invalid base_connstr: {0}")]
    Syntax(String),
    /// A key libpq does not know either.
    #[error("invalid connection option \"{key}\"{origin}")]
    UnknownKey { key: String, origin: Origin },
    /// A key (or value) libpq knows but this implementation cannot honour.
    #[error("unsupported connection option \"{key}\"{origin}: {reason}")]
    Unsupported {
        key: String,
        origin: Origin,
        reason: String,
    },
    /// A known key with a value it does not accept (secret values are never shown).
    #[error("invalid value {value} for connection option \"{key}\"{origin}: {reason}")]
    Value {
        key: String,
        value: String,
        origin: Origin,
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
