//! From `base_connstr` plus a database name to a live connection.
//!
//! The database name is set on the parsed config, never pasted into the string, so
//! any name works (quotes, spaces, `#`, newlines) and URIs stay valid.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client, NoTls};

use super::ConnStr;

/// Settings the daemon adds unless `base_connstr` sets them.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub application_name: String,
    pub connect_timeout: Duration,
}

/// `base_connstr` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    #[error("invalid base_connstr: {0}")]
    Invalid(String),
}

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{}", crate::conninfo::describe_pg_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Other(String),
}

impl ConnectError {
    /// The SQLSTATE the server sent, if it got that far.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            ConnectError::Postgres(e) => e.code(),
            ConnectError::Other(_) => None,
        }
    }
}

/// Everything needed to connect to one database. `Debug` never shows the password.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({:?})", self.config.get_dbname())
    }
}

/// Resolves `base` for the database `dbname`.
pub fn resolve(base: &ConnStr, dbname: &str, defaults: &Defaults) -> Result<Target, ConnInfoError> {
    let mut config = if base.expose().trim().is_empty() {
        tokio_postgres::Config::new()
    } else {
        tokio_postgres::Config::from_str(base.expose())
            .map_err(|e| ConnInfoError::Invalid(e.to_string()))?
    };
    config.dbname(dbname);
    if config.get_application_name().is_none() {
        config.application_name(&defaults.application_name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(defaults.connect_timeout);
    }
    if config.get_hosts().is_empty() {
        config.host_path("/var/run/postgresql");
    }
    if config.get_user().is_none() {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten();
        config.user(user.map(|u| u.name).unwrap_or_else(|| "postgres".into()));
    }
    // Dead peers (a server host that vanished) are noticed within about two minutes.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(60));
    Ok(Target { config })
}

/// A live connection: the client and the way to cancel its running query.
pub struct Connected {
    pub client: Client,
    pub canceller: Canceller,
}

/// Cancels the query running on one connection, server-side.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
}

impl Canceller {
    pub async fn cancel(&self) -> Result<(), tokio_postgres::Error> {
        self.token.cancel_query(NoTls).await
    }
}

impl Target {
    /// Opens the connection; its I/O runs on a task of its own until the client is dropped.
    pub async fn connect(&self) -> Result<Connected, ConnectError> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            // The error, if any, reaches the client's next query as is_closed().
            let _ = connection.await;
        });
        let canceller = Canceller {
            token: client.cancel_token(),
        };
        Ok(Connected { client, canceller })
    }
}
