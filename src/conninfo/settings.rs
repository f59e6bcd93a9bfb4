//! The connection settings typed and checked, with libpq's defaults: hosts and ports
//! (unix socket directory, port 5432), the OS user, timeouts, TLS and session modes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Defaults;
use super::error::ConnInfoError;
use super::params::Params;

/// Where libpq looks for the server's socket when no host is given: Debian's
/// compiled-in directory, then the upstream default.
pub(super) const SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];
pub(super) const DEFAULT_PORT: u16 = 5432;

/// `sslmode`, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

/// One entry of the host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    /// A unix socket directory.
    Socket(PathBuf),
    /// A TCP server: the name (for TLS and the password file) and/or the address.
    Tcp {
        name: Option<String>,
        addr: Option<IpAddr>,
    },
}

/// The typed settings. The password is handled by the caller (it may depend on the
/// host, through the password file).
#[derive(Debug)]
pub(super) struct Settings {
    pub hosts: Vec<(Host, u16)>,
    pub user: String,
    pub connect_timeout: Option<Duration>,
    pub application_name: String,
    pub options: Option<String>,
    pub keepalives: bool,
    pub keepalives_idle: Option<Duration>,
    pub keepalives_interval: Option<Duration>,
    pub keepalives_count: Option<u32>,
    pub tcp_user_timeout: Option<Duration>,
    pub sslmode: SslMode,
    pub ssl_direct: bool,
    pub channel_binding: tokio_postgres::config::ChannelBinding,
    pub session_attrs: SessionAttrs,
    pub load_balance: bool,
}

impl Settings {
    pub fn from_params(params: &Params, defaults: &Defaults) -> Result<Settings, ConnInfoError> {
        let seconds = |key| Ok::<_, ConnInfoError>(int(params, key)?.map(|s| secs(s.max(0))));
        Ok(Settings {
            hosts: hosts(params, &|dir, port| socket_exists(dir, port))?,
            user: user(params)?,
            connect_timeout: connect_timeout(params, defaults)?,
            application_name: application_name(params, defaults),
            options: params.non_empty("options").map(str::to_string),
            keepalives: int(params, "keepalives")?.is_none_or(|k| k != 0),
            keepalives_idle: seconds("keepalives_idle")?,
            keepalives_interval: seconds("keepalives_interval")?,
            keepalives_count: int(params, "keepalives_count")?
                .map(|c| c.clamp(0, i64::from(u32::MAX)) as u32),
            tcp_user_timeout: int(params, "tcp_user_timeout")?
                .map(|ms| Duration::from_millis(ms.max(0) as u64)),
            sslmode: sslmode(params)?,
            ssl_direct: ssl_direct(params)?,
            channel_binding: channel_binding(params)?,
            session_attrs: session_attrs(params)?,
            load_balance: choice(
                params,
                "load_balance_hosts",
                &[("disable", false), ("random", true)],
            )?
            .unwrap_or(false),
        })
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s as u64)
}

/// An integer option, parsed as libpq's `parse_int_param` (blanks around allowed).
pub(super) fn int(params: &Params, key: &str) -> Result<Option<i64>, ConnInfoError> {
    let Some(text) = params.non_empty(key) else {
        return Ok(None);
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| params.invalid(key, "not an integer"))
}

/// One of a fixed set of values, or `None` when unset.
fn choice<T: Copy>(
    params: &Params,
    key: &str,
    values: &[(&str, T)],
) -> Result<Option<T>, ConnInfoError> {
    let Some(text) = params.non_empty(key) else {
        return Ok(None);
    };
    match values.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
            Err(params.invalid(key, &format!("expected one of {}", names.join(", "))))
        }
    }
}

/// libpq: zero or negative means wait forever, and less than 2 seconds is 2 seconds.
/// Unset means the daemon's own default.
fn connect_timeout(
    params: &Params,
    defaults: &Defaults,
) -> Result<Option<Duration>, ConnInfoError> {
    Ok(match int(params, "connect_timeout")? {
        None => Some(defaults.connect_timeout),
        Some(s) if s <= 0 => None,
        Some(s) => Some(secs(s.max(2))),
    })
}

fn user(params: &Params) -> Result<String, ConnInfoError> {
    if let Some(user) = params.non_empty("user") {
        return Ok(user.to_string());
    }
    super::env::os_user()
        .ok_or_else(|| ConnInfoError::Conflict("could not look up the local user name".into()))
}

/// `application_name`, else `fallback_application_name`, else the daemon's name.
fn application_name(params: &Params, defaults: &Defaults) -> String {
    params
        .non_empty("application_name")
        .or_else(|| params.non_empty("fallback_application_name"))
        .unwrap_or(&defaults.application_name)
        .to_string()
}

/// `sslmode`, default `prefer`; with `sslrootcert=system` the default is `verify-full`
/// and weaker modes are refused (PostgreSQL 16).
fn sslmode(params: &Params) -> Result<SslMode, ConnInfoError> {
    use SslMode::*;
    let values = [
        ("disable", Disable),
        ("allow", Allow),
        ("prefer", Prefer),
        ("require", Require),
        ("verify-ca", VerifyCa),
        ("verify-full", VerifyFull),
    ];
    let mode = choice(params, "sslmode", &values)?;
    if params.get("sslrootcert") != Some("system") {
        return Ok(mode.unwrap_or(Prefer));
    }
    match mode {
        None | Some(VerifyFull) => Ok(VerifyFull),
        Some(_) => {
            Err(params.invalid("sslmode", "sslrootcert=system requires sslmode verify-full"))
        }
    }
}

fn ssl_direct(params: &Params) -> Result<bool, ConnInfoError> {
    let direct = choice(
        params,
        "sslnegotiation",
        &[("postgres", false), ("direct", true)],
    )?
    .unwrap_or(false);
    if direct && sslmode(params)? < SslMode::Require {
        return Err(ConnInfoError::Conflict(
            "weak sslmode may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")".into(),
        ));
    }
    Ok(direct)
}

fn channel_binding(
    params: &Params,
) -> Result<tokio_postgres::config::ChannelBinding, ConnInfoError> {
    use tokio_postgres::config::ChannelBinding::*;
    let values = [
        ("disable", Disable),
        ("prefer", Prefer),
        ("require", Require),
    ];
    Ok(choice(params, "channel_binding", &values)?.unwrap_or(Prefer))
}

fn session_attrs(params: &Params) -> Result<SessionAttrs, ConnInfoError> {
    use SessionAttrs::*;
    let values = [
        ("any", Any),
        ("read-write", ReadWrite),
        ("read-only", ReadOnly),
        ("primary", Primary),
        ("standby", Standby),
        ("prefer-standby", PreferStandby),
    ];
    Ok(choice(params, "target_session_attrs", &values)?.unwrap_or(Any))
}

/// Whether a server socket for `port` exists in `dir`.
fn socket_exists(dir: &str, port: u16) -> bool {
    Path::new(dir).join(format!(".s.PGSQL.{port}")).exists()
}

/// The host list: `host` and `hostaddr` (comma-separated, same length when both are
/// given) paired with `port` (one for all, or one per host; empty means 5432).
pub(super) fn hosts(
    params: &Params,
    has_socket: &dyn Fn(&str, u16) -> bool,
) -> Result<Vec<(Host, u16)>, ConnInfoError> {
    let names: Vec<&str> = params
        .non_empty("host")
        .map_or(Vec::new(), |h| h.split(',').collect());
    let addrs: Vec<&str> = params
        .non_empty("hostaddr")
        .map_or(Vec::new(), |h| h.split(',').collect());
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(ConnInfoError::Conflict(format!(
            "could not match {} host names to {} hostaddr values",
            names.len(),
            addrs.len()
        )));
    }
    let count = names.len().max(addrs.len()).max(1);
    let ports = ports(params, count)?;
    (0..count)
        .map(|i| {
            let name = names.get(i).copied().unwrap_or("");
            let addr = addrs.get(i).copied().unwrap_or("");
            Ok((host(params, name, addr, ports[i], has_socket)?, ports[i]))
        })
        .collect()
}

fn ports(params: &Params, hosts: usize) -> Result<Vec<u16>, ConnInfoError> {
    let list: Vec<&str> = params
        .non_empty("port")
        .map_or(vec![""], |p| p.split(',').collect());
    let parsed = list
        .iter()
        .map(|p| match p.trim() {
            "" => Ok(DEFAULT_PORT),
            p => p
                .parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| params.invalid("port", "invalid port number")),
        })
        .collect::<Result<Vec<u16>, _>>()?;
    match parsed.len() {
        1 => Ok(vec![parsed[0]; hosts]),
        n if n == hosts => Ok(parsed),
        n => Err(ConnInfoError::Conflict(format!(
            "could not match {n} port numbers to {hosts} hosts"
        ))),
    }
}

/// One host entry, libpq's way: a `hostaddr` means TCP to that address; else a name
/// starting with `/` is a socket directory; else a host name; else the default socket
/// directory (the first of [`SOCKET_DIRS`] that has the server's socket).
fn host(
    params: &Params,
    name: &str,
    addr: &str,
    port: u16,
    has_socket: &dyn Fn(&str, u16) -> bool,
) -> Result<Host, ConnInfoError> {
    if !addr.is_empty() {
        let ip = addr
            .parse()
            .map_err(|_| params.invalid("hostaddr", "could not parse network address"))?;
        let name = (!name.is_empty()).then(|| name.to_string());
        return Ok(Host::Tcp {
            name,
            addr: Some(ip),
        });
    }
    if name.starts_with('@') {
        return Err(params.invalid("host", "abstract unix sockets are not supported"));
    }
    if name.starts_with('/') {
        return Ok(Host::Socket(PathBuf::from(name)));
    }
    if !name.is_empty() {
        return Ok(Host::Tcp {
            name: Some(name.to_string()),
            addr: None,
        });
    }
    let dir = SOCKET_DIRS
        .iter()
        .find(|dir| has_socket(dir, port))
        .unwrap_or(&SOCKET_DIRS[0]);
    Ok(Host::Socket(PathBuf::from(dir)))
}
