//! The gathered settings typed and checked: what tokio-postgres' `Config` can hold goes
//! straight into one; what only libpq knows (its host list rules and socket default,
//! its `sslmode` and `target_session_attrs` meanings, the TLS files, the password
//! file) goes into [`Libpq`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres::config::{ChannelBinding, SslNegotiation, TargetSessionAttrs};

use crate::error::ConnInfoError;
use crate::setting::Defaults;
use crate::settings::Conninfo;
use crate::tls::{self, SslMode};

/// Where libpq looks for the server's socket when no host is given: Debian's
/// compiled-in directory, then the upstream default.
pub(crate) const SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];
const DEFAULT_PORT: u16 = 5432;

/// TCP keepalive idle time unless `keepalives_idle` is set: a vanished server host is
/// noticed within about two minutes rather than libpq's (kernel default) two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// `target_session_attrs`, with libpq's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

/// One entry of the host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A unix socket directory.
    Socket(PathBuf),
    /// A TCP server: the name (for TLS and the password file) and/or the address.
    Tcp {
        name: Option<String>,
        addr: Option<IpAddr>,
    },
}

/// The settings tokio-postgres has no place for, with libpq's meanings.
#[derive(Debug)]
pub(crate) struct Libpq {
    pub hosts: Vec<(Host, u16)>,
    pub sslmode: SslMode,
    pub attrs: SessionAttrs,
    /// For the whole attempt, the `target_session_attrs` check included.
    pub timeout: Option<Duration>,
    pub load_balance: bool,
    pub passfile: Option<PathBuf>,
    pub tls: tls::Options,
}

/// Types `all` (defaults already filled in): the config shared by every host (no
/// host, port or database yet) and the libpq-only settings.
pub(crate) fn typed(all: &Conninfo, defaults: &Defaults) -> Result<(Config, Libpq), ConnInfoError> {
    let int = |key| int(all, key);
    let seconds = |key| Ok::<_, ConnInfoError>(int(key)?.map(|s| secs(s.max(0))));
    let user = all
        .non_empty("user")
        .ok_or_else(|| ConnInfoError::Conflict("could not look up the local user name".into()))?;
    let application_name = all
        .non_empty("application_name")
        .or_else(|| all.non_empty("fallback_application_name"))
        .unwrap_or_default();
    let timeout = connect_timeout(all, defaults)?;
    let mut config = Config::new();
    config
        .user(user)
        .application_name(application_name)
        .channel_binding(channel_binding(all)?)
        .target_session_attrs(TargetSessionAttrs::Any)
        .keepalives(int("keepalives")?.is_none_or(|k| k != 0))
        .keepalives_idle(seconds("keepalives_idle")?.unwrap_or(KEEPALIVE_IDLE));
    if ssl_direct(all)? {
        config.ssl_negotiation(SslNegotiation::Direct);
    }
    if let Some(options) = all.non_empty("options") {
        config.options(options);
    }
    if let Some(password) = all.non_empty("password") {
        config.password(password);
    }
    if let Some(timeout) = timeout {
        config.connect_timeout(timeout);
    }
    if let Some(interval) = seconds("keepalives_interval")? {
        config.keepalives_interval(interval);
    }
    if let Some(count) = int("keepalives_count")? {
        config.keepalives_retries(count.clamp(0, i64::from(u32::MAX)) as u32);
    }
    if let Some(ms) = int("tcp_user_timeout")? {
        config.tcp_user_timeout(Duration::from_millis(ms.max(0) as u64));
    }
    let libpq = Libpq {
        hosts: hosts(all, &socket_exists)?,
        sslmode: sslmode(all)?,
        attrs: session_attrs(all)?,
        timeout,
        load_balance: choice(
            all,
            "load_balance_hosts",
            &[("disable", false), ("random", true)],
        )?
        .unwrap_or(false),
        passfile: all.non_empty("passfile").map(PathBuf::from),
        tls: tls::Options::new(all)?,
    };
    Ok((config, libpq))
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s as u64)
}

/// An integer option, parsed as libpq's `parse_int_param` (blanks around allowed).
fn int(all: &Conninfo, key: &str) -> Result<Option<i64>, ConnInfoError> {
    let Some(text) = all.non_empty(key) else {
        return Ok(None);
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| all.invalid(key, "not an integer"))
}

/// One of a fixed set of values, or `None` when unset.
fn choice<T: Copy>(
    all: &Conninfo,
    key: &str,
    values: &[(&str, T)],
) -> Result<Option<T>, ConnInfoError> {
    let Some(text) = all.non_empty(key) else {
        return Ok(None);
    };
    match values.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Ok(Some(*value)),
        None => {
            let names: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
            Err(all.invalid(key, &format!("expected one of {}", names.join(", "))))
        }
    }
}

/// libpq: zero or negative means wait forever, and less than 2 seconds is 2 seconds.
/// Unset means the caller's default.
fn connect_timeout(all: &Conninfo, defaults: &Defaults) -> Result<Option<Duration>, ConnInfoError> {
    Ok(match int(all, "connect_timeout")? {
        None => Some(defaults.connect_timeout),
        Some(s) if s <= 0 => None,
        Some(s) => Some(secs(s.max(2))),
    })
}

/// `sslmode`, default `prefer`; with `sslrootcert=system` the default is `verify-full`
/// and weaker modes are refused (PostgreSQL 16).
fn sslmode(all: &Conninfo) -> Result<SslMode, ConnInfoError> {
    use SslMode::*;
    let values = [
        ("disable", Disable),
        ("allow", Allow),
        ("prefer", Prefer),
        ("require", Require),
        ("verify-ca", VerifyCa),
        ("verify-full", VerifyFull),
    ];
    let mode = choice(all, "sslmode", &values)?;
    if all.non_empty("sslrootcert") != Some("system") {
        return Ok(mode.unwrap_or(Prefer));
    }
    match mode {
        None | Some(VerifyFull) => Ok(VerifyFull),
        Some(_) => Err(all.invalid("sslmode", "sslrootcert=system requires sslmode verify-full")),
    }
}

fn ssl_direct(all: &Conninfo) -> Result<bool, ConnInfoError> {
    let direct = choice(
        all,
        "sslnegotiation",
        &[("postgres", false), ("direct", true)],
    )?
    .unwrap_or(false);
    if direct && sslmode(all)? < SslMode::Require {
        return Err(ConnInfoError::Conflict(
            "weak sslmode may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")".into(),
        ));
    }
    Ok(direct)
}

fn channel_binding(all: &Conninfo) -> Result<ChannelBinding, ConnInfoError> {
    use ChannelBinding::*;
    let values = [
        ("disable", Disable),
        ("prefer", Prefer),
        ("require", Require),
    ];
    Ok(choice(all, "channel_binding", &values)?.unwrap_or(Prefer))
}

fn session_attrs(all: &Conninfo) -> Result<SessionAttrs, ConnInfoError> {
    use SessionAttrs::*;
    let values = [
        ("any", Any),
        ("read-write", ReadWrite),
        ("read-only", ReadOnly),
        ("primary", Primary),
        ("standby", Standby),
        ("prefer-standby", PreferStandby),
    ];
    Ok(choice(all, "target_session_attrs", &values)?.unwrap_or(Any))
}

/// Whether a server socket for `port` exists in `dir`.
fn socket_exists(dir: &str, port: u16) -> bool {
    Path::new(dir).join(format!(".s.PGSQL.{port}")).exists()
}

/// The host list: `host` and `hostaddr` (comma-separated, same length when both are
/// given) paired with `port` (one for all, or one per host; empty means 5432).
fn hosts(
    all: &Conninfo,
    has_socket: &dyn Fn(&str, u16) -> bool,
) -> Result<Vec<(Host, u16)>, ConnInfoError> {
    let list = |key| {
        all.non_empty(key)
            .map_or(Vec::new(), |h| h.split(',').collect())
    };
    let (names, addrs): (Vec<&str>, Vec<&str>) = (list("host"), list("hostaddr"));
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(ConnInfoError::Conflict(format!(
            "could not match {} host names to {} hostaddr values",
            names.len(),
            addrs.len()
        )));
    }
    let count = names.len().max(addrs.len()).max(1);
    let ports = ports(all, count)?;
    (0..count)
        .map(|i| {
            let name = names.get(i).copied().unwrap_or("");
            let addr = addrs.get(i).copied().unwrap_or("");
            Ok((host(all, name, addr, ports[i], has_socket)?, ports[i]))
        })
        .collect()
}

fn ports(all: &Conninfo, hosts: usize) -> Result<Vec<u16>, ConnInfoError> {
    let list: Vec<&str> = all
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
                .ok_or_else(|| all.invalid("port", "invalid port number")),
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
    all: &Conninfo,
    name: &str,
    addr: &str,
    port: u16,
    has_socket: &dyn Fn(&str, u16) -> bool,
) -> Result<Host, ConnInfoError> {
    let name = (!name.is_empty()).then(|| name.to_string());
    if !addr.is_empty() {
        let ip = addr
            .parse()
            .map_err(|_| all.invalid("hostaddr", "could not parse network address"))?;
        return Ok(Host::Tcp {
            name,
            addr: Some(ip),
        });
    }
    match name {
        Some(name) if name.starts_with('@') => {
            Err(all.invalid("host", "abstract unix sockets are not supported"))
        }
        Some(name) if name.starts_with('/') => Ok(Host::Socket(PathBuf::from(name))),
        Some(name) => Ok(Host::Tcp {
            name: Some(name),
            addr: None,
        }),
        None => {
            let dir = SOCKET_DIRS
                .iter()
                .find(|dir| has_socket(dir, port))
                .unwrap_or(&SOCKET_DIRS[0]);
            Ok(Host::Socket(PathBuf::from(dir)))
        }
    }
}
