//! The TOML twin of pgqd.ini: a `[pgqd]` table with typed values
//! (`database_list = ["a", "b"]`, numbers for periods), read into the same raw entries
//! as pgqd.ini and typed by the same rules.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::value::Raw;
use super::{ConfigError, Entry, Origin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    pgqd: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// Reads the TOML file at `path` into raw entries, sorted by line.
pub fn read(path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let fail = |reason: String| ConfigError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = super::source::read(path).map_err(fail)?;
    let text = String::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".into()))?;
    entries(&text, path)
}

/// Parses TOML text into raw entries, sorted by line; `path` is only used in messages.
pub fn entries(text: &str, path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let file: TomlFile = toml::from_str(text).map_err(|e| ConfigError::Toml {
        message: e
            .message()
            .trim_end()
            .replace("unknown field", "unknown table"),
        origin: origin(text, path, e.span().map_or(0, |s| s.start)),
    })?;
    let mut entries: Vec<Entry> = file
        .pgqd
        .into_iter()
        .map(|(key, value)| Entry {
            origin: origin(text, path, key.span().start),
            key: key.into_inner(),
            value: raw(value.into_inner()),
        })
        .collect();
    entries.sort_by_key(|e| match e.origin {
        Origin::File { line, .. } => line,
        _ => 0,
    });
    Ok(entries)
}

/// A TOML value as a raw value: scalars and arrays of strings as they are, anything
/// else as TOML writes it (every rule refuses it).
fn raw(value: toml::Value) -> Raw {
    match value {
        toml::Value::String(text) => Raw::Text(text),
        toml::Value::Integer(n) => Raw::Integer(n),
        toml::Value::Float(x) => Raw::Float(x),
        toml::Value::Boolean(b) => Raw::Bool(b),
        toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => Raw::List(
            items
                .into_iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect(),
        ),
        other => Raw::Other(other.to_string()),
    }
}

fn origin(text: &str, path: &Path, offset: usize) -> Origin {
    let offset = offset.min(text.len());
    let line = text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    Origin::File {
        file: path.to_path_buf(),
        line,
    }
}
