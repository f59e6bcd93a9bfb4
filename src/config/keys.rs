//! Every setting in one table: its field, its value rule and its default. A new key is
//! one line here; the struct, the defaults, the typing and `--check` follow from it.

use std::path::PathBuf;
use std::time::Duration;

use pgconninfo::ConnStr;

use super::value::{
    Connstr, Facility, File, Foreign, Format, Integer, List, Raw, Rule, Seconds, Text,
};
use super::{ConfigError, Entry, ForeignTicker, LogFormat, Origin};

/// One key of the table.
pub struct Key {
    pub name: &'static str,
    /// The default as text, typed by the same rule as a configured value; `--check`
    /// shows it beside a value set elsewhere.
    pub default: &'static str,
    set: fn(&mut Config, &Raw) -> Result<(), String>,
    show: fn(&Config) -> String,
    quote: fn(&Raw) -> Option<String>,
}

/// Declares [`Config`] and [`KEYS`] from one list of `field: Type = Rule, "default";`.
macro_rules! settings {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $rule:ty, $default:literal;)*) => {
        /// The effective settings of one run.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $($(#[$doc])* pub $field: $ty,)*
        }

        /// The keys in the order `--check` shows them.
        pub const KEYS: &[Key] = &[$(Key {
            name: stringify!($field),
            default: $default,
            set: |config, raw| {
                config.$field = <$rule>::parse(raw)?;
                Ok(())
            },
            show: |config| <$rule>::show(&config.$field),
            quote: <$rule>::quote,
        },)*];

        /// The defaults table typed. A default that does not type would fall back to
        /// the type's zero; `defaults_are_valid` (tests) makes sure none does.
        impl Default for Config {
            fn default() -> Self {
                Config {
                    $($field: <$rule>::parse(&Raw::Text($default.into())).unwrap_or_default(),)*
                }
            }
        }
    };
}

// pgqd 3.5's keys with its defaults, then this project's own.
settings! {
    /// Append log lines here; reopened on SIGHUP.
    logfile: Option<PathBuf> = File, "";
    /// Pid written at start, removed at exit.
    pidfile: Option<PathBuf> = File, "";
    /// libpq connection string without dbname.
    base_connstr: ConnStr = Connstr, "";
    /// Database used to list the others.
    initial_database: String = Text, "template1";
    /// Databases to serve; empty means every database that allows connections.
    database_list: Vec<String> = List, "";
    /// Non-zero: also log to syslog.
    syslog: i64 = Integer, "1";
    syslog_ident: String = Text, "pgqd";
    syslog_facility: String = Facility, "daemon";
    check_period: Duration = Seconds, "60";
    maint_period: Duration = Seconds, "120";
    retry_period: Duration = Seconds, "30";
    ticker_period: Duration = Seconds, "1";
    stats_period: Duration = Seconds, "30";
    connection_lifetime: Duration = Seconds, "3600";
    /// Longest a `pgq.ticker()` call may run before it is cancelled.
    ticker_timeout: Duration = Seconds, "10";
    /// Longest a `pgq.maint_retry_events()` call may run.
    retry_timeout: Duration = Seconds, "60";
    /// Longest one maintenance operation (a rotation step, a VACUUM) may run.
    maint_timeout: Duration = Seconds, "600";
    /// Longest a connection attempt may take unless base_connstr sets connect_timeout.
    connect_timeout: Duration = Seconds, "10";
    /// `text` (pgqd's line format) or `json` (one object per line).
    log_format: LogFormat = Format, "text";
    /// `host:port` of the HTTP listener (metrics, health, status); empty: none.
    http_listen: String = Text, "";
    /// exporter-toolkit's web configuration file (TLS, basic auth, headers) for the
    /// listener; empty: plain HTTP, open to anyone who reaches it.
    http_web_config: Option<PathBuf> = File, "";
    /// For `pgqd --healthcheck` only: the credentials it presents to a secured
    /// listener (`basic_auth`, `tls_config`, as in a Prometheus scrape config).
    http_healthcheck_config: Option<PathBuf> = File, "";
    /// Seconds between readings of PgQ's queue and consumer figures per database (60:
    /// Prometheus' default scrape interval; each reading costs its backend about 0.7 ms
    /// of server CPU, see `jobs/queue_stats.rs`).
    queue_stats_period: Duration = Seconds, "60";
    /// Non-zero: tick a database only while holding its leader lock (one instance of
    /// several ticks); 0: tick without it, as pgqd 3.5.
    leader_lock: i64 = Integer, "1";
    /// Another client calling `pgq.ticker()` in a database (a pgqd 3.5 left running):
    /// `warn` reports it, `yield` also stops ticking that database while it ticks.
    foreign_ticker: ForeignTicker = Foreign, "warn";
}

/// Keys this pgqd once had and no longer needs: accepted with a warning (saying why),
/// so that a config written for an older version still starts.
pub const OBSOLETE: &[(&str, &str)] = &[(
    "round_connections",
    "every maintenance round now runs on a short-lived connection of its own, and retry rounds call pgq only when an event is due",
)];

/// The key called `name`.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// Where each effective value came from, in [`KEYS`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Origins(Vec<(&'static str, Origin)>);

impl Origins {
    /// The origin of `key`'s value ([`Origin::Default`] when nothing set it).
    pub fn of(&self, key: &str) -> &Origin {
        self.0
            .iter()
            .find(|(name, _)| *name == key)
            .map_or(&Origin::Default, |(_, origin)| origin)
    }
}

/// The typing step for every source: entries in precedence order (later wins), each
/// typed on its own so an error names its own line or variable, duplicates included.
pub fn typed(entries: &[Entry]) -> Result<(Config, Origins), ConfigError> {
    let mut config = Config::default();
    let mut origins: Vec<(&'static str, Origin)> =
        KEYS.iter().map(|key| (key.name, Origin::Default)).collect();
    for entry in entries {
        let key = find(&entry.key).ok_or_else(|| ConfigError::UnknownKey {
            key: entry.key.clone(),
            origin: entry.origin.clone(),
        })?;
        (key.set)(&mut config, &entry.value).map_err(|reason| ConfigError::Value {
            key: key.name.into(),
            value: (key.quote)(&entry.value),
            origin: entry.origin.clone(),
            reason,
        })?;
        if let Some(slot) = origins.iter_mut().find(|(name, _)| *name == key.name) {
            slot.1 = entry.origin.clone();
        }
    }
    let origins = Origins(origins);
    check_connstr(&config, origins.of("base_connstr"))?;
    Ok((config, origins))
}

/// base_connstr is checked when the config is read (syntax, keys, values; no
/// environment or files), so a typo stops start-up or a reload instead of failing
/// every connection later.
fn check_connstr(config: &Config, origin: &Origin) -> Result<(), ConfigError> {
    if *origin == Origin::Default {
        return Ok(());
    }
    pgconninfo::validate(&config.base_connstr).map_err(|e| ConfigError::Value {
        key: "base_connstr".into(),
        value: None,
        origin: origin.clone(),
        reason: super::escape(&e.to_string()),
    })
}

impl Config {
    /// The effective settings as `key = value` lines (password masked), for `--check`.
    pub fn effective(&self) -> String {
        KEYS.iter()
            .map(|key| format!("{} = {}\n", key.name, super::escape(&(key.show)(self))))
            .collect()
    }

    /// [`Config::effective`] with a comment above each setting saying where its value
    /// came from: `# default`, `# from FILE:LINE (default: D)`, `# from PGQD_KEY (...)`.
    pub fn explained(&self, origins: &Origins) -> String {
        KEYS.iter()
            .map(|key| {
                let value = super::escape(&(key.show)(self));
                let origin = match origins.of(key.name) {
                    Origin::Default => "default".to_string(),
                    origin if key.default.is_empty() => format!("from {origin} (default: empty)"),
                    origin => format!("from {origin} (default: {})", key.default),
                };
                format!("# {origin}\n{} = {value}\n", key.name)
            })
            .collect()
    }
}

/// The names of every key, in table order.
pub fn known_keys() -> Vec<String> {
    KEYS.iter().map(|key| key.name.to_string()).collect()
}

/// Every key with its default as text, in table order: the reference page
/// (`docs/configuration.md`) and the man page are checked against it.
pub fn key_defaults() -> Vec<(&'static str, &'static str)> {
    KEYS.iter().map(|key| (key.name, key.default)).collect()
}
