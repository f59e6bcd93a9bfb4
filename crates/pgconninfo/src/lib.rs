//! Connections as libpq makes them: `base_connstr` (key=value or URI) plus the PG*
//! environment, a service file, the password file and defaults, resolved for one
//! database into a [`Target`], connected with TLS (rustls) as `sslmode` says.
//!
//! The flow, one file per step: `parse.rs`/`uri.rs` read the text into settings
//! (key, value, origin: `settings.rs`); `keys.rs` knows libpq's options and the one list
//! of secret keys; `settings.rs` adds the service file (`service.rs`), the environment
//! (`env.rs`) and the defaults; `typed.rs` types them into tokio-postgres' `Config` plus
//! the libpq-only settings; `target.rs` makes one config per host with its password
//! (`passfile.rs`) and the TLS connector (`tls.rs`, `verify.rs`); `connect.rs`
//! connects. `redact.rs` masks secrets for display.

mod connect;
mod env;
mod error;
mod keys;
mod parse;
mod passfile;
mod redact;
mod service;
mod settings;
mod target;
mod tls;
mod typed;
mod uri;
mod verify;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

pub use connect::{Canceller, ConnectError, Connected, HostFailures};
pub use env::{Env, process_env};
pub use error::{ConnInfoError, Origin};
pub use target::Target;
pub use tls::SslMode;
pub use typed::SessionAttrs;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `base_connstr` as written in the config. `Display`, `Debug` and `Serialize` mask
/// any password, so it can go into logs and `--check` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnStr(String);

impl ConnStr {
    pub fn new(text: impl Into<String>) -> Self {
        ConnStr(text.into())
    }

    /// The real text, password included: only for building connections.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl ConnStr {
    /// Whether the text sets a secret (a password, in key=value form, a URI's user info
    /// or query): `--check` warns when such a config file is readable by others.
    pub fn has_password(&self) -> bool {
        // Only the syntax matters here: a string with an unsupported key still holds
        // its password. Text that does not even parse is assumed to hold one.
        let text = self.0.trim();
        let settings = match uri::is_uri(text) {
            true => uri::settings(text),
            false => parse::settings(text),
        };
        settings.map_or(true, |all| {
            (all.iter()).any(|s| keys::is_secret(&s.key) && !s.value.is_empty())
        })
    }
}

impl fmt::Display for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnStr({:?})", redact(&self.0))
    }
}

impl Serialize for ConnStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.0))
    }
}

impl<'de> Deserialize<'de> for ConnStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ConnStr)
    }
}

/// A PostgreSQL error as one line: `SQLSTATE: message` when the server sent one,
/// else the client-side reason (connection refused, closed, timed out...).
pub fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Masks the password (and other secrets) of a key=value conninfo or a URI.
pub fn redact(text: &str) -> String {
    redact::redact(text)
}

/// A warning when `file` (a config file) holds the password of `base` and group or
/// others may read it, in the spirit of libpq's check on the password file.
pub fn exposed_password(file: &std::path::Path, base: &ConnStr) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    (base.has_password() && mode & 0o077 != 0).then(|| {
        format!(
            "config file \"{}\" holds a password in base_connstr and has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        )
    })
}

/// Settings the daemon adds unless the connection settings say otherwise.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Used when neither `application_name` nor `fallback_application_name` is set.
    pub application_name: String,
    /// Used when `connect_timeout` is not set (anywhere).
    pub connect_timeout: Duration,
}

/// Checks `base` without the environment, files or network: syntax, unknown and
/// unsupported keys, and the values written in it. For config load and `--check`.
pub fn validate(base: &ConnStr) -> Result<(), ConnInfoError> {
    let defaults = Defaults {
        application_name: String::new(),
        connect_timeout: Duration::ZERO,
    };
    let no_env = |_: &str| None;
    let all = settings::Conninfo::parse(base.expose())?.with_defaults(&defaults, &no_env);
    typed::typed(&all, &defaults).map(drop)
}

/// Resolves `base` for the database `dbname` with the process environment, reading
/// the service and password files now. `dbname` wins over any dbname in `base`, a
/// service file or `PGDATABASE`.
pub fn resolve(base: &ConnStr, dbname: &str, defaults: &Defaults) -> Result<Target, ConnInfoError> {
    resolve_with(base, dbname, defaults, &process_env)
}

/// [`resolve`] with the environment looked up through `env` (for tests).
pub fn resolve_with(
    base: &ConnStr,
    dbname: &str,
    defaults: &Defaults,
    env: Env<'_>,
) -> Result<Target, ConnInfoError> {
    target::resolve_with(base, dbname, defaults, env)
}
