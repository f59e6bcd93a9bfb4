//! From a connection string plus a database name to a [`Target`]: the gathered settings
//! typed into one tokio-postgres config per host (with its password, from the
//! settings or the password file), the TLS connector, and the session requirements.
//!
//! The database name is set on each config, never pasted into the string, so any name
//! works (quotes, spaces, `#`) and URIs stay valid: pgqd 3.5 appends `dbname='x'`.

use std::path::Path;
use std::time::Duration;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connstr::ConnStr;
use crate::env::Env;
use crate::error::ConnInfoError;
use crate::passfile::Lookup;
use crate::setting::Defaults;
use crate::settings::Conninfo;
use crate::tls::{self, SslMode, Verification};
use crate::typed::{self, Host, SOCKET_DIRS, SessionAttrs};

/// Everything needed to connect to one database. `Debug` never shows the password.
#[derive(Clone)]
pub struct Target {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) tls: Option<MakeRustlsConnect>,
    pub(crate) verification: Option<Verification>,
    /// The trusted roots, when the server certificate is verified.
    pub(crate) roots: Option<String>,
    pub(crate) sslmode: SslMode,
    pub(crate) attrs: SessionAttrs,
    pub(crate) timeout: Option<Duration>,
    pub(crate) load_balance: bool,
    warnings: Vec<String>,
}

/// One host of the list, ready to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Its `Debug` shows whether a password is set, never the password.
    pub config: tokio_postgres::Config,
    /// libpq's way of naming it in errors: `server on socket "..."` or `server at "h", port N`.
    pub label: String,
    pub socket: bool,
    /// Where to look the password up when none is set.
    pub passfile: Option<Lookup>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = |e: &Endpoint| e.config.get_password().map(|_| "********");
        f.debug_struct("Target")
            .field("servers", &self.servers())
            .field("password", &password(&self.endpoints[0]))
            .field("endpoints", &self.endpoints)
            .field("sslmode", &self.sslmode)
            .field("verification", &self.verification)
            .field("target_session_attrs", &self.attrs)
            .finish()
    }
}

impl Target {
    /// The servers tried, in order, as named in errors.
    pub(crate) fn servers(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.label.as_str()).collect()
    }

    /// Warnings found while resolving (a password file with loose permissions).
    /// Each is also logged, once per run per file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Resolves `base` for `dbname` with the environment `env`.
pub(crate) fn resolve_with(
    base: &ConnStr,
    dbname: &str,
    defaults: &Defaults,
    env: Env<'_>,
) -> Result<Target, ConnInfoError> {
    let all = Conninfo::parse(base.expose())?
        .with_fallbacks(env)?
        .with_defaults(defaults, env);
    let (mut config, libpq) = typed::typed(&all, defaults)?;
    config.dbname(dbname);
    let unnamed = |(h, _): &(Host, u16)| matches!(h, Host::Tcp { name: None, .. });
    if libpq.sslmode == SslMode::VerifyFull && libpq.hosts.iter().any(unnamed) {
        return Err(ConnInfoError::Conflict(
            "host name must be specified for a verified SSL connection (hostaddr alone is not enough for sslmode=verify-full)".into(),
        ));
    }
    // libpq never uses TLS on a unix socket, so certificates are only read for TCP.
    let tls = match (libpq.hosts.iter()).any(|(h, _)| matches!(h, Host::Tcp { .. })) {
        true => tls::connector(&libpq.tls, libpq.sslmode)?,
        false => None,
    };
    let mut warnings = Vec::new();
    let endpoints = (libpq.hosts.iter())
        .map(|(host, port)| {
            let endpoint = endpoint(&config, host, *port, libpq.passfile.as_deref());
            let found = endpoint.passfile.as_ref().map(Lookup::find);
            let warning = found.and_then(|f| f.warning);
            warnings.extend(warning.filter(|w| !warnings.contains(w)));
            endpoint
        })
        .collect();
    Ok(Target {
        endpoints,
        verification: tls.as_ref().map(|t| t.verification),
        roots: tls.as_ref().and_then(|t| t.roots.clone()),
        tls: tls.map(|t| t.connector),
        sslmode: libpq.sslmode,
        attrs: libpq.attrs,
        timeout: libpq.timeout,
        load_balance: libpq.load_balance,
        warnings,
    })
}

/// `shared` for one host, with the password file to read when no password is set.
fn endpoint(
    shared: &tokio_postgres::Config,
    host: &Host,
    port: u16,
    passfile: Option<&Path>,
) -> Endpoint {
    let mut config = shared.clone();
    config.port(port);
    let (label, passfile_host) = match host {
        Host::Socket(dir) => {
            config.host_path(dir);
            let shown = dir.join(format!(".s.PGSQL.{port}"));
            let label = format!("server on socket \"{}\"", shown.display());
            (label, socket_passfile_host(dir))
        }
        Host::Tcp { name, addr } => {
            let shown = name
                .clone()
                .unwrap_or_else(|| addr.map(|a| a.to_string()).unwrap_or_default());
            config.host(&shown);
            let label = match (name, addr) {
                (Some(_), Some(addr)) => {
                    config.hostaddr(*addr);
                    format!("server at \"{shown}\" ({addr}), port {port}")
                }
                _ => format!("server at \"{shown}\", port {port}"),
            };
            (label, shown)
        }
    };
    let passfile = passfile
        .filter(|_| config.get_password().is_none())
        .map(|path| Lookup {
            path: path.to_path_buf(),
            host: passfile_host,
            port: port.to_string(),
            dbname: config.get_dbname().unwrap_or_default().to_string(),
            user: config.get_user().unwrap_or_default().to_string(),
        });
    Endpoint {
        config,
        label,
        socket: matches!(host, Host::Socket(_)),
        passfile,
    }
}

/// libpq looks a unix socket up as `localhost` when it is the default socket
/// directory, else by its path.
fn socket_passfile_host(dir: &Path) -> String {
    if SOCKET_DIRS.iter().any(|d| dir == Path::new(d)) {
        return "localhost".into();
    }
    dir.display().to_string()
}
