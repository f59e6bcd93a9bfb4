//! The configuration: every key, its default, its validation, read from pgqd.ini or
//! TOML and the `PGQD_*` environment.
//!
//! One pipeline (as ripgrep's flags): a reader turns each source into raw entries
//! (key, raw value, [`Origin`]): `ini.rs`, `toml.rs` (both through `source.rs`, which
//! bounds what is read) and `env.rs`. Then `keys.rs` types them all the same way into
//! [`Config`], from one table of keys, rules and defaults; the rules are in `value.rs`,
//! the messages in `error.rs`. A new key is one line in that table plus the samples.
//! `paths.rs` checks the log and pid paths for `--check`.

mod env;
mod error;
mod ini;
mod keys;
mod paths;
mod source;
mod suggest;
mod toml;
mod value;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use keys::{Config, Origins, key_defaults, known_keys};
pub use paths::check_paths;
pub use value::Raw;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What to do about another client ticking a database (see `jobs::watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForeignTicker {
    /// Report it and go on ticking.
    #[default]
    Warn,
    /// Report it and stop ticking (and housekeeping) that database while it ticks.
    Yield,
}

/// Where a raw entry (and so an effective value) came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a config file (the main file or one it includes).
    File { file: PathBuf, line: usize },
    /// A `PGQD_*` environment variable.
    Env(String),
    /// Nothing set it: the defaults table.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { file, line } => {
                write!(f, "{}:{line}", escape(&file.display().to_string()))
            }
            Origin::Env(var) => f.write_str(&escape(var)),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One setting as a source gives it, before typing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Raw,
    pub origin: Origin,
}

/// Something the config allows but that is probably not what the user meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub origin: Origin,
    pub message: String,
}

/// A loaded config with the warnings found while reading it and where each value
/// came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
    pub origins: Origins,
}

/// Reads the config file at `path` (TOML when its name ends in `.toml`, else
/// pgqd.ini) and the `PGQD_*` variables of this process; at start and at every reload.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with_env(path, std::env::vars_os())
}

/// [`load`] with the environment given as `vars`.
pub fn load_with_env(
    path: &Path,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Loaded, ConfigError> {
    let (from_file, mut warnings) = read_file(path)?;
    let (from_env, env_warnings) = env::read(vars)?;
    warnings.extend(env_warnings);
    // Precedence, written once: the defaults table < the file < PGQD_* variables (a
    // later entry wins). No command-line switch sets a key; one would come last.
    let mut entries = [from_file, from_env].concat();
    warnings.extend(obsolete_warnings(&mut entries));
    let (config, origins) = keys::typed(&entries)?;
    Ok(Loaded {
        config,
        warnings,
        origins,
    })
}

/// Takes the entries of obsolete keys out, with a warning for each.
fn obsolete_warnings(entries: &mut Vec<Entry>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    entries.retain(|entry| {
        let Some((key, why)) = keys::OBSOLETE.iter().find(|(key, _)| *key == entry.key) else {
            return true;
        };
        warnings.push(Warning {
            origin: entry.origin.clone(),
            message: format!("{key} is obsolete and has no effect: {why}"),
        });
        false
    });
    warnings
}

fn read_file(path: &Path) -> Result<(Vec<Entry>, Vec<Warning>), ConfigError> {
    if path.extension().is_some_and(|ext| ext == "toml") {
        return Ok((toml::read(path)?, Vec::new()));
    }
    let entries = ini::read(path)?;
    let warnings = inline_comment_warnings(&entries);
    Ok((entries, warnings))
}

/// The tutorial mistake `database_list = db1  # comment`: pgqd keeps the comment as
/// part of the value; so do we, but we say so.
fn inline_comment_warnings(entries: &[Entry]) -> Vec<Warning> {
    entries
        .iter()
        .filter_map(|entry| {
            let Raw::Text(value) = &entry.value else {
                return None;
            };
            let at = [" #", "\t#", " ;", "\t;"].iter().filter_map(|m| value.find(m)).min()?;
            let intended = value[..at].trim_end();
            // base_connstr is not quoted: it may hold a password.
            let message = match entry.key.as_str() {
                "base_connstr" => "value of base_connstr contains an inline comment, which pgqd.ini does not support: the whole text is used".to_string(),
                key => format!(
                    "value of {} contains an inline comment, which pgqd.ini does not support: the whole text \"{}\" is used; did you mean \"{}\"?",
                    escape(key), escape(value), escape(intended)
                ),
            };
            (!intended.is_empty()).then(|| Warning {
                origin: entry.origin.clone(),
                message,
            })
        })
        .collect()
}

/// `text` with control characters (CR, LF, tab, the other C0 and C1 codes, DEL)
/// escaped, for messages that echo a value or a path: a stray `\r` must not rewrite
/// the line a user reads.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
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
