//! Connections as libpq makes them: `base_connstr` (key=value or URI) plus the PG*
//! environment, a service file, the password file and defaults, resolved for one
//! database into a [`Target`], connected with TLS (rustls) as `sslmode` says.
//!
//! The flow, one file per step: `read.rs` tells a URI (`uri.rs`) from key=value text
//! (`parse.rs`), which are read into settings (key, value, origin: `setting.rs`);
//! `keys.rs` knows libpq's options and the one list of secret keys; `settings.rs`
//! gathers them with the service file (`service.rs`), the environment (`env.rs`) and
//! the defaults; `typed.rs` types them into tokio-postgres' `Config` plus the
//! libpq-only settings; `target.rs` makes one config per host with its password
//! (`passfile.rs`) and the TLS connector (`tls.rs`, `verify.rs`); `connect.rs`
//! connects, and `failure.rs` says why it could not. `connstr.rs` holds the string as
//! written and `redact.rs` masks its secrets for display.

mod connect;
mod connstr;
mod env;
mod error;
mod failure;
mod keys;
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
pub use env::{Env, process_env};
pub use error::{ConnInfoError, Origin};
pub use failure::{ConnectError, HostFailures, describe_pg_error};
pub use setting::Defaults;
pub use target::Target;
pub use tls::SslMode;
pub use typed::SessionAttrs;

/// Masks the password (and other secrets) of a key=value conninfo or a URI.
pub fn redact(text: &str) -> String {
    redact::redact(text)
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
