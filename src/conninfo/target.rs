//! From `base_connstr` plus a database name to a [`Target`]: the gathered settings
//! turned into one tokio-postgres config per host (with its password, from the
//! settings or the password file), the TLS connector, and the session requirements.
//!
//! The database name is set on each config, never pasted into the string, so any name
//! works (quotes, spaces, `#`) and URIs stay valid: pgqd 3.5 appends `dbname='x'`.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::env::{self, Env};
use super::error::ConnInfoError;
use super::params::Params;
use super::passfile::Lookup;
use super::settings::{Host, SOCKET_DIRS, SessionAttrs, Settings, SslMode};
use super::tls::{self, Verification};
use super::{ConnStr, Defaults};

/// TCP keepalive idle time unless `keepalives_idle` is set: a vanished server host is
/// noticed within about two minutes rather than libpq's (kernel default) two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// Everything needed to connect to one database. `Debug` never shows the password.
#[derive(Clone)]
pub struct Target {
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) tls: Option<MakeRustlsConnect>,
    pub(super) verification: Option<Verification>,
    /// The trusted roots, when the server certificate is verified.
    pub(super) roots: Option<String>,
    pub(super) sslmode: SslMode,
    pub(super) attrs: SessionAttrs,
    pub(super) timeout: Option<Duration>,
    pub(super) load_balance: bool,
    warnings: Vec<String>,
}

/// One host of the list, ready to connect.
#[derive(Clone)]
pub(super) struct Endpoint {
    pub config: tokio_postgres::Config,
    /// libpq's way of naming it in errors: `server on socket "..."` or `server at "h", port N`.
    pub label: String,
    pub socket: bool,
    /// Where to look the password up when none is set.
    pub passfile: Option<Lookup>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = &self.endpoints[0].config;
        f.debug_struct("Target")
            .field("servers", &self.servers())
            .field("dbname", &first.get_dbname().unwrap_or_default())
            .field("user", &first.get_user().unwrap_or_default())
            .field("password", &password_source(&self.endpoints[0]))
            .field("sslmode", &self.sslmode)
            .field("verification", &self.verification)
            .field("target_session_attrs", &self.attrs)
            .field("connect_timeout", &self.timeout)
            .finish()
    }
}

impl Target {
    /// The servers tried, in order, as named in errors.
    pub fn servers(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.label.as_str()).collect()
    }

    /// Warnings found while resolving (a password file with loose permissions).
    /// Each is also logged, once per run per file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Resolves `base` for `dbname` with the environment `env`.
pub(super) fn resolve_with(
    base: &ConnStr,
    dbname: &str,
    defaults: &Defaults,
    env: Env<'_>,
) -> Result<Target, ConnInfoError> {
    let params = Params::from_conninfo(base.expose())?.with_fallbacks(env)?;
    let settings = Settings::from_params(&params, defaults)?;
    let any_tcp = settings
        .hosts
        .iter()
        .any(|(h, _)| matches!(h, Host::Tcp { .. }));
    if settings.sslmode == SslMode::VerifyFull
        && settings
            .hosts
            .iter()
            .any(|(h, _)| matches!(h, Host::Tcp { name: None, .. }))
    {
        return Err(ConnInfoError::Conflict(
            "host name must be specified for a verified SSL connection (hostaddr alone is not enough for sslmode=verify-full)".into(),
        ));
    }
    // libpq never uses TLS on a unix socket, so certificates are only read for TCP.
    let tls = if any_tcp {
        tls::connector(&params, settings.sslmode, env)?
    } else {
        None
    };
    let mut warnings = Vec::new();
    let endpoints = settings
        .hosts
        .iter()
        .map(|(host, port)| endpoint(&params, &settings, host, *port, dbname, env, &mut warnings))
        .collect();
    Ok(Target {
        endpoints,
        verification: tls.as_ref().map(|t| t.verification),
        roots: tls.as_ref().and_then(|t| t.roots.clone()),
        tls: tls.map(|t| t.connector),
        sslmode: settings.sslmode,
        attrs: settings.session_attrs,
        timeout: settings.connect_timeout,
        load_balance: settings.load_balance,
        warnings,
    })
}

fn endpoint(
    params: &Params,
    settings: &Settings,
    host: &Host,
    port: u16,
    dbname: &str,
    env: Env<'_>,
    warnings: &mut Vec<String>,
) -> Endpoint {
    let mut config = base_config(settings, dbname);
    config.port(port);
    let (label, passfile_host) = match host {
        Host::Socket(dir) => {
            config.host_path(dir);
            let shown = dir.join(format!(".s.PGSQL.{port}"));
            (
                format!("server on socket \"{}\"", shown.display()),
                socket_passfile_host(dir),
            )
        }
        Host::Tcp { name, addr } => {
            let shown = name
                .clone()
                .unwrap_or_else(|| addr.map(|a| a.to_string()).unwrap_or_default());
            config.host(&shown);
            let label = match (name, addr) {
                (Some(_), Some(addr)) => format!("server at \"{shown}\" ({addr}), port {port}"),
                _ => format!("server at \"{shown}\", port {port}"),
            };
            if let (Some(_), Some(addr)) = (name, addr) {
                config.hostaddr(*addr);
            }
            (label, shown)
        }
    };
    let mut passfile = None;
    if let Some(password) = params.non_empty("password") {
        config.password(password);
    } else if let Some(path) = passfile_path(params, env) {
        let lookup = Lookup {
            path,
            host: passfile_host,
            port: port.to_string(),
            dbname: dbname.to_string(),
            user: settings.user.clone(),
        };
        let found = lookup.find();
        warnings.extend(found.warning.filter(|w| !warnings.contains(w)));
        passfile = Some(lookup);
    }
    Endpoint {
        config,
        label,
        socket: matches!(host, Host::Socket(_)),
        passfile,
    }
}

/// Settings shared by every host.
fn base_config(settings: &Settings, dbname: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .dbname(dbname)
        .user(&settings.user)
        .application_name(&settings.application_name)
        .channel_binding(settings.channel_binding)
        .target_session_attrs(TargetSessionAttrs::Any)
        .keepalives(settings.keepalives)
        .keepalives_idle(settings.keepalives_idle.unwrap_or(KEEPALIVE_IDLE));
    if settings.ssl_direct {
        config.ssl_negotiation(tokio_postgres::config::SslNegotiation::Direct);
    }
    if let Some(options) = &settings.options {
        config.options(options);
    }
    if let Some(timeout) = settings.connect_timeout {
        config.connect_timeout(timeout);
    }
    if let Some(interval) = settings.keepalives_interval {
        config.keepalives_interval(interval);
    }
    if let Some(count) = settings.keepalives_count {
        config.keepalives_retries(count);
    }
    if let Some(timeout) = settings.tcp_user_timeout {
        config.tcp_user_timeout(timeout);
    }
    config
}

/// `passfile`, else `PGPASSFILE` (both already in the params), else `~/.pgpass`.
fn passfile_path(params: &Params, env: Env<'_>) -> Option<PathBuf> {
    params
        .non_empty("passfile")
        .map(PathBuf::from)
        .or_else(|| env::in_home(env, ".pgpass"))
}

/// libpq looks a unix socket up as `localhost` when it is the default socket
/// directory, else by its path.
fn socket_passfile_host(dir: &std::path::Path) -> String {
    if SOCKET_DIRS.iter().any(|d| dir == std::path::Path::new(d)) {
        return "localhost".into();
    }
    dir.display().to_string()
}

/// How the endpoint gets its password, for Debug.
fn password_source(endpoint: &Endpoint) -> String {
    match (&endpoint.config.get_password(), &endpoint.passfile) {
        (Some(_), _) => "********".into(),
        (None, Some(lookup)) => format!("(password file {})", lookup.path.display()),
        (None, None) => "(none)".into(),
    }
}
