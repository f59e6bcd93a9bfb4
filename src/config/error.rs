//! Why a configuration was refused. Messages keep pgqd 3.5's wording where it has one,
//! name where the value came from (file and line, or the variable), and show control
//! characters escaped.

use std::path::PathBuf;

use super::{Origin, escape};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not load file \"{}\": {reason}", escape(&path.display().to_string()))]
    Read { path: PathBuf, reason: String },
    #[error("syntax error in configuration ({origin})")]
    Syntax { origin: Origin },
    #[error("invalid section \"{}\" in configuration ({origin})", escape(name))]
    UnknownSection { name: String, origin: Origin },
    #[error("value without section: {} in configuration ({origin})", escape(key))]
    NoSection { key: String, origin: Origin },
    #[error("include nesting too deep in configuration ({origin})")]
    IncludeDepth { origin: Origin },
    #[error("error processing include file in configuration ({origin}): {source}")]
    Include {
        origin: Origin,
        source: Box<ConfigError>,
    },
    #[error("cannot expand home directory in \"{}\": {reason}", escape(value))]
    Home { value: String, reason: String },
    #[error(
        "unknown parameter: pgqd/{} in configuration ({origin}){}",
        escape(key),
        hint_for(key)
    )]
    UnknownKey { key: String, origin: Origin },
    /// `value` as its rule allows it to be quoted; `None` for base_connstr.
    #[error(
        "{}invalid value {}for parameter {key}{}: {}",
        lead(origin),
        quoted(value),
        trail(origin),
        escape(reason)
    )]
    Value {
        key: String,
        value: Option<String>,
        origin: Origin,
        reason: String,
    },
    #[error("{} in configuration ({origin})", escape(message))]
    Toml { message: String, origin: Origin },
    /// A `PGQD_*` variable that cannot be used; never shows its value.
    #[error("{var}: {}", escape(reason))]
    Env { var: String, reason: String },
}

fn quoted(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or(String::new(), |value| format!("\"{}\" ", escape(value)))
}

/// Where a value's message starts: with the variable's name for the environment.
fn lead(origin: &Origin) -> String {
    match origin {
        Origin::Env(var) => format!("{var}: "),
        _ => String::new(),
    }
}

/// Where a value's message ends: pgqd's "in configuration (file:line)".
fn trail(origin: &Origin) -> String {
    match origin {
        Origin::File { .. } => format!(" in configuration ({origin})"),
        Origin::Env(_) => String::new(),
        Origin::Default => " (default)".into(),
    }
}

/// A hint for keys pgqd users are known to put in pgqd.ini by mistake, or the key a
/// misspelled one was probably meant to be.
fn hint_for(key: &str) -> String {
    const PER_QUEUE: &[&str] = &["ticker_max_count", "ticker_max_lag", "ticker_idle_period"];
    let bare = key.strip_prefix("queue_").unwrap_or(key);
    if PER_QUEUE.contains(&bare) {
        return format!(
            "; {bare} is a per-queue setting: use select pgq.set_queue_config('QUEUE', '{bare}', 'VALUE') in the database"
        );
    }
    super::suggest::closest_key(key)
        .map(|closest| format!("; did you mean {closest}?"))
        .unwrap_or_default()
}
