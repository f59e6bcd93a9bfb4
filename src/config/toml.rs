//! The TOML twin of pgqd.ini: a `[pgqd]` table with typed values
//! (`database_list = ["a", "b"]`, numbers for periods), typed by the same serde rules.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Config, ConfigError, Origin};

/// One key of the `[pgqd]` table with the line it is on.
pub struct TomlEntry {
    pub key: String,
    pub value: toml::Value,
    pub origin: Origin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    pgqd: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// Parses the file into entries, sorted by line.
pub fn entries(text: &str, path: &Path) -> Result<Vec<TomlEntry>, ConfigError> {
    let file: TomlFile = toml::from_str(text).map_err(|e| ConfigError::Toml {
        message: e
            .message()
            .trim_end()
            .replace("unknown field", "unknown table"),
        origin: origin(text, path, e.span().map_or(0, |s| s.start)),
    })?;
    let mut entries: Vec<TomlEntry> = file
        .pgqd
        .into_iter()
        .map(|(key, value)| TomlEntry {
            origin: origin(text, path, key.span().start),
            key: key.into_inner(),
            value: value.into_inner(),
        })
        .collect();
    entries.sort_by_key(|e| e.origin.line);
    Ok(entries)
}

/// Types the entries, each on its own first so an error names its key and line.
pub fn typed(entries: &[TomlEntry]) -> Result<Config, ConfigError> {
    let known = super::known_keys();
    let mut table = toml::Table::new();
    for entry in entries {
        if !known.iter().any(|k| k == &entry.key) {
            return Err(ConfigError::UnknownKey {
                key: entry.key.clone(),
                origin: entry.origin.clone(),
            });
        }
        let single = toml::Table::from_iter([(entry.key.clone(), entry.value.clone())]);
        Config::deserialize(single).map_err(|e| ConfigError::Value {
            key: entry.key.clone(),
            value: entry.value.to_string().trim_matches('"').to_string(),
            origin: entry.origin.clone(),
            reason: e.message().trim_end().to_string(),
        })?;
        table.insert(entry.key.clone(), entry.value.clone());
    }
    Config::deserialize(table).map_err(|e| ConfigError::Toml {
        message: e.message().to_string(),
        origin: Origin {
            file: Default::default(),
            line: 0,
        },
    })
}

fn origin(text: &str, path: &Path, offset: usize) -> Origin {
    let offset = offset.min(text.len());
    let line = text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    Origin {
        file: path.to_path_buf(),
        line,
    }
}
