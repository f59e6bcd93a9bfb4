//! The typed configuration: every key, its default, its validation, read from
//! pgqd.ini or TOML.
//!
//! Two layers (see `ini.rs` and `toml.rs`): a reader turns a file into raw entries with
//! file and line; then each entry is typed through serde into [`Config`], so both
//! formats share one struct, one defaults table ([`Config::default`]) and one set of
//! value rules (`value.rs`). A new key is one field here plus a line in the samples.

mod ini;
mod toml;
mod value;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::conninfo::ConnStr;

/// The effective settings of one run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Append log lines here; reopened on SIGHUP.
    #[serde(with = "value::file")]
    pub logfile: Option<PathBuf>,
    /// Pid written at start, removed at exit.
    #[serde(with = "value::file")]
    pub pidfile: Option<PathBuf>,
    /// libpq connection string without dbname.
    pub base_connstr: ConnStr,
    /// Database used to list the others.
    pub initial_database: String,
    /// Databases to serve; empty means every database that allows connections.
    #[serde(with = "value::list")]
    pub database_list: Vec<String>,
    /// Non-zero: also log to syslog.
    #[serde(with = "value::integer")]
    pub syslog: i64,
    pub syslog_ident: String,
    #[serde(with = "value::facility")]
    pub syslog_facility: String,
    #[serde(with = "value::seconds")]
    pub check_period: Duration,
    #[serde(with = "value::seconds")]
    pub maint_period: Duration,
    #[serde(with = "value::seconds")]
    pub retry_period: Duration,
    #[serde(with = "value::seconds")]
    pub ticker_period: Duration,
    #[serde(with = "value::seconds")]
    pub stats_period: Duration,
    #[serde(with = "value::seconds")]
    pub connection_lifetime: Duration,
    /// Keys below are this project's own (not in pgqd 3.5).
    /// Longest a `pgq.ticker()` call may run before it is cancelled.
    #[serde(with = "value::seconds")]
    pub ticker_timeout: Duration,
    /// Longest a `pgq.maint_retry_events()` call may run.
    #[serde(with = "value::seconds")]
    pub retry_timeout: Duration,
    /// Longest one maintenance operation (a rotation step, a VACUUM) may run.
    #[serde(with = "value::seconds")]
    pub maint_timeout: Duration,
    /// Longest a connection attempt may take unless base_connstr sets connect_timeout.
    #[serde(with = "value::seconds")]
    pub connect_timeout: Duration,
    /// `text` (pgqd's line format) or `json` (one object per line).
    pub log_format: LogFormat,
    /// Non-zero: only the instance holding a database's leader lock ticks it; 0 is
    /// pgqd 3.5's behaviour (every instance ticks).
    #[serde(with = "value::integer")]
    pub leader_lock: i64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The defaults table: pgqd 3.5's for its keys, ours for the new ones.
impl Default for Config {
    fn default() -> Self {
        let secs = Duration::from_secs;
        Config {
            logfile: None,
            pidfile: None,
            base_connstr: ConnStr::default(),
            initial_database: "template1".into(),
            database_list: Vec::new(),
            syslog: 1,
            syslog_ident: "pgqd".into(),
            syslog_facility: "daemon".into(),
            check_period: secs(60),
            maint_period: secs(120),
            retry_period: secs(30),
            ticker_period: secs(1),
            stats_period: secs(30),
            connection_lifetime: secs(3600),
            ticker_timeout: secs(10),
            retry_timeout: secs(60),
            maint_timeout: secs(600),
            connect_timeout: secs(10),
            log_format: LogFormat::Text,
            leader_lock: 1,
        }
    }
}

/// Where a raw entry came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `key = value` line of a pgqd.ini, before typing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// Why a config file was refused. Messages keep pgqd 3.5's wording where it has one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not load file \"{}\": {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("syntax error in configuration ({origin})")]
    Syntax { origin: Origin },
    #[error("invalid section \"{name}\" in configuration ({origin})")]
    UnknownSection { name: String, origin: Origin },
    #[error("value without section: {key} in configuration ({origin})")]
    NoSection { key: String, origin: Origin },
    #[error("include nesting too deep in configuration ({origin})")]
    IncludeDepth { origin: Origin },
    #[error("error processing include file in configuration ({origin}): {source}")]
    Include {
        origin: Origin,
        source: Box<ConfigError>,
    },
    #[error("cannot expand home directory in \"{value}\": {reason}")]
    Home { value: String, reason: String },
    #[error(
        "unknown parameter: pgqd/{key} in configuration ({origin}){}",
        hint_for(key)
    )]
    UnknownKey { key: String, origin: Origin },
    #[error("invalid value \"{value}\" for parameter {key} in configuration ({origin}): {reason}")]
    Value {
        key: String,
        value: String,
        origin: Origin,
        reason: String,
    },
    #[error("{message} in configuration ({origin})")]
    Toml { message: String, origin: Origin },
}

/// A hint for keys pgqd users are known to put in pgqd.ini by mistake.
fn hint_for(key: &str) -> String {
    const PER_QUEUE: &[&str] = &["ticker_max_count", "ticker_max_lag", "ticker_idle_period"];
    let bare = key.strip_prefix("queue_").unwrap_or(key);
    if PER_QUEUE.contains(&bare) {
        return format!(
            "; {bare} is a per-queue setting: use select pgq.set_queue_config('QUEUE', '{bare}', 'VALUE') in the database"
        );
    }
    String::new()
}

/// Something the config allows but that is probably not what the user meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub origin: Origin,
    pub message: String,
}

/// A loaded config with the warnings found while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
}

/// Reads a config file: TOML when its name ends in `.toml`, else pgqd.ini.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    if path.extension().is_some_and(|ext| ext == "toml") {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: io_reason(&e),
        })?;
        let entries = toml::entries(&text, path)?;
        let config = toml::typed(&entries)?;
        check_connstr(&config, entries.iter().map(|e| (e.key.as_str(), &e.origin)))?;
        return Ok(Loaded {
            config,
            warnings: Vec::new(),
        });
    }
    let entries = ini::read(path)?;
    let config = typed(&entries)?;
    check_connstr(&config, entries.iter().map(|e| (e.key.as_str(), &e.origin)))?;
    Ok(Loaded {
        config,
        warnings: inline_comment_warnings(&entries),
    })
}

/// base_connstr is checked when the config is read (syntax, keys, values; no
/// environment or files), so a typo stops start-up or a reload instead of failing
/// every connection later.
fn check_connstr<'a>(
    config: &Config,
    keys: impl DoubleEndedIterator<Item = (&'a str, &'a Origin)>,
) -> Result<(), ConfigError> {
    let mut keys = keys;
    let Some((_, origin)) = keys.rfind(|(key, _)| *key == "base_connstr") else {
        return Ok(());
    };
    let origin = origin.clone();
    crate::conninfo::validate(&config.base_connstr).map_err(|e| ConfigError::Value {
        key: "base_connstr".into(),
        value: config.base_connstr.to_string(),
        origin,
        reason: e.to_string(),
    })
}

/// Types ini entries: each is checked on its own (so an error names its line, as pgqd
/// does for every line, duplicates included), then the last of each key wins.
fn typed(entries: &[Entry]) -> Result<Config, ConfigError> {
    let known = known_keys();
    for entry in entries {
        if !known.iter().any(|k| k == &entry.key) {
            return Err(ConfigError::UnknownKey {
                key: entry.key.clone(),
                origin: entry.origin.clone(),
            });
        }
        let single = [(entry.key.clone(), entry.value.clone())];
        from_pairs(single.into_iter()).map_err(|e| ConfigError::Value {
            key: entry.key.clone(),
            value: entry.value.clone(),
            origin: entry.origin.clone(),
            reason: e.to_string(),
        })?;
    }
    // pgqd lets a later line override an earlier one; serde would call it a duplicate.
    let mut last: Vec<(String, String)> = Vec::new();
    for entry in entries {
        last.retain(|(key, _)| key != &entry.key);
        last.push((entry.key.clone(), entry.value.clone()));
    }
    from_pairs(last.into_iter()).map_err(|e| ConfigError::Value {
        key: String::new(),
        value: String::new(),
        origin: Origin {
            file: PathBuf::new(),
            line: 0,
        },
        reason: e.to_string(),
    })
}

fn from_pairs(
    pairs: impl Iterator<Item = (String, String)>,
) -> Result<Config, serde::de::value::Error> {
    Config::deserialize(serde::de::value::MapDeserializer::new(pairs))
}

/// The names of every key, in declaration order, taken from the struct itself.
pub fn known_keys() -> Vec<String> {
    match ::toml::Table::try_from(Config::default()) {
        Ok(table) => table.keys().cloned().collect(),
        Err(_) => Vec::new(),
    }
}

/// The tutorial mistake `database_list = db1  # comment`: pgqd keeps the comment as
/// part of the value; so do we, but we say so.
fn inline_comment_warnings(entries: &[Entry]) -> Vec<Warning> {
    entries
        .iter()
        .filter_map(|entry| {
            let at = [" #", "\t#", " ;", "\t;"].iter().filter_map(|m| entry.value.find(m)).min()?;
            let intended = entry.value[..at].trim_end();
            (!intended.is_empty()).then(|| Warning {
                origin: entry.origin.clone(),
                message: format!(
                    "value of {} contains an inline comment, which pgqd.ini does not support: the whole text \"{}\" is used; did you mean \"{}\"?",
                    entry.key, entry.value, intended
                ),
            })
        })
        .collect()
}

impl Config {
    /// The effective settings as `key = value` lines (password masked), for `--check`.
    pub fn effective(&self) -> String {
        let Ok(table) = ::toml::Table::try_from(self) else {
            return String::new();
        };
        let mut out = String::new();
        for (key, value) in table {
            let text = match value {
                ::toml::Value::String(s) => s,
                ::toml::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                ::toml::Value::Float(seconds) => seconds.to_string(),
                other => other.to_string(),
            };
            out.push_str(&format!("{key} = {text}\n"));
        }
        out
    }
}

/// An io error as pgqd's messages show it (no "(os error 2)").
pub(crate) fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// `~` and `~user` expansion for file values, as pgqd does.
pub(crate) fn expand_home(value: &str) -> Result<String, ConfigError> {
    let Some(rest) = value.strip_prefix('~') else {
        return Ok(value.to_string());
    };
    let (user, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let fail = |reason: &str| ConfigError::Home {
        value: value.into(),
        reason: reason.into(),
    };
    let home = if user.is_empty() {
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home),
            None => home_of(nix::unistd::User::from_uid(nix::unistd::getuid()))
                .ok_or_else(|| fail("no home directory"))?,
        }
    } else {
        home_of(nix::unistd::User::from_name(user)).ok_or_else(|| fail("no such user"))?
    };
    Ok(format!("{}{}", home.display(), tail))
}

fn home_of(user: nix::Result<Option<nix::unistd::User>>) -> Option<PathBuf> {
    user.ok().flatten().map(|u| u.dir)
}

#[cfg(test)]
mod tests;
