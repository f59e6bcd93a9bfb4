//! libpq's connection rules for [tokio-postgres](https://docs.rs/tokio-postgres): a
//! connection string (key=value or `postgresql://` URI) plus the PG* environment, a
//! service file, the password file and the caller's defaults, resolved for one
//! database into a [`Target`] and connected with TLS (rustls) as `sslmode` says,
//! trying several hosts in turn for `target_session_attrs`.
//!
//! No message, `Display` or `Debug` output ever holds a password: values are shown
//! only for known, non-secret keys.
//!
//! # Examples
//!
//! Check a connection string without touching the environment, files or network:
//!
//! ```
//! use pgconninfo::{ConnStr, validate};
//!
//! assert!(validate(&ConnStr::new("host=/tmp port=5433 sslmode=verify-full")).is_ok());
//! assert!(validate(&ConnStr::new("postgresql://app@db1,db2/app?target_session_attrs=primary")).is_ok());
//! let error = validate(&ConnStr::new("host=h krbsrvname=postgres")).unwrap_err();
//! assert!(error.to_string().starts_with("unsupported connection option \"krbsrvname\""));
//! ```
//!
//! Show a connection string without its password:
//!
//! ```
//! use pgconninfo::{ConnStr, redact};
//!
//! assert_eq!(redact("host=db password='s3 cr3t' user=app"), "host=db password=******** user=app");
//! assert_eq!(redact("postgresql://app:s3cr3t@db/app"), "postgresql://app:********@db/app");
//! let base = ConnStr::new("host=db password=s3cr3t");
//! assert_eq!(format!("{base}"), "host=db password=********");
//! assert_eq!(base.expose(), "host=db password=s3cr3t");
//! ```
//!
//! Resolve for one database with the caller's defaults (no network: connecting is
//! [`Target::connect`]); the database name is the caller's, whatever the string says:
//!
//! ```
//! use std::time::Duration;
//! use pgconninfo::{ConnStr, Defaults, resolve_with};
//!
//! let defaults = Defaults {
//!     application_name: "myapp".into(),
//!     connect_timeout: Duration::from_secs(10),
//! };
//! // resolve() reads the process environment; here only HOME is set, to a place
//! // without ~/.pgpass or ~/.postgresql.
//! let env = |name: &str| (name == "HOME").then(|| "/nonexistent".to_string());
//! let base = ConnStr::new("host=db1,db2 port=5433 dbname=other user=app password=s3cr3t");
//! let target = resolve_with(&base, "mydb", &defaults, &env)?;
//! let shown = format!("{target:?}");
//! assert!(shown.contains(r#"server at \"db2\", port 5433"#), "{shown}");
//! assert!(!shown.contains("s3cr3t"));
//! # Ok::<(), pgconninfo::ConnInfoError>(())
//! ```
//!
//! # Layout
//!
//! One file per step, in the order a connection string goes through them:
//!
//! - `read`: tells a URI from key=value text, the one place that does;
//!   `parse` reads key=value text and `uri` a URI, into settings (`setting`: key, value
//!   and origin, and the caller's [`Defaults`]).
//! - `keys`: libpq's options, which of them are honoured, and the one list of secret keys.
//! - `settings`: the settings of a connection in libpq's precedence, with the service
//!   file (`service`), the PG* environment (`env`) and the defaults.
//! - `typed`: the settings typed into tokio-postgres' `Config` plus the libpq-only ones.
//! - `target`: one config per host, with its password file look-up (`passfile`) and the
//!   TLS connector (`tls`, `verify`: how the server certificate is checked).
//! - `connect`: connecting, host by host, over a socket `dial` opens; `failure`: why it
//!   failed, in libpq's words; `lane`: the connection's socket shared with a direct lane
//!   for one hot statement.
//! - `connstr`: the string as the caller holds it; `redact`: masking its secrets.
//! - `error`: why a connection string cannot be used, and where a setting came from.

#![deny(missing_docs)]

mod connect;
mod connstr;
mod dial;
mod env;
mod error;
mod failure;
mod keys;
mod lane;
mod parse;
mod passfile;
mod read;
mod redact;
mod service;
mod setting;
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

use std::time::Duration;

pub use connect::{Canceller, Connected};
pub use connstr::{ConnStr, exposed_password};
pub use env::Env;
pub use error::{ConnInfoError, Origin};
pub use failure::{ConnectError, HostFailures, describe_pg_error};
pub use lane::{Lane, LaneError, Row, ServerError, SimpleQuery};
pub use setting::Defaults;
pub use target::Target;

/// Masks the password (and any other secret, or value of an unknown key) of a
/// key=value connection string or a URI, for logs and messages.
pub fn redact(text: &str) -> String {
    redact::redact(text)
}

/// Checks `base` without the environment, files or network: syntax, unknown and
/// unsupported keys, and the values written in it. For loading and checking a config.
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
    resolve_with(base, dbname, defaults, &env::process_env)
}

/// [`resolve`] with the environment looked up through `env` instead of the process
/// environment (for tests, and for callers that keep their own).
pub fn resolve_with(
    base: &ConnStr,
    dbname: &str,
    defaults: &Defaults,
    env: Env<'_>,
) -> Result<Target, ConnInfoError> {
    target::resolve_with(base, dbname, defaults, env)
}

/// The README's examples, run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
