//! Settings from the environment, as containers are configured: `PGQD_<KEY>` for every
//! key (`PGQD_TICKER_PERIOD`, `PGQD_DATABASE_LIST`, ...), read as text like a pgqd.ini
//! value, and `PGQD_BASE_CONNSTR_FILE`, the connection string read from a file, as
//! Docker and Kubernetes mount secrets. Not in pgqd 3.5; disqus/docker-pgqd used
//! the same names.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::suggest::edit_distance;
use super::value::Raw;
use super::{ConfigError, Entry, Origin, Warning, keys};

const PREFIX: &str = "PGQD_";
/// The variable naming a file that holds base_connstr.
const CONNSTR_FILE: &str = "PGQD_BASE_CONNSTR_FILE";

/// The variable that sets `key`.
pub fn variable(key: &str) -> String {
    format!("{PREFIX}{}", key.to_uppercase())
}

/// The `PGQD_*` variables among `vars` as raw entries (sorted by name), with a
/// warning for each one that names no setting.
pub fn read(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(Vec<Entry>, Vec<Warning>), ConfigError> {
    let mut ours: Vec<(String, OsString)> = vars
        .into_iter()
        .filter(|(name, _)| name.as_bytes().starts_with(PREFIX.as_bytes()))
        .map(|(name, value)| (name.to_string_lossy().into_owned(), value))
        .collect();
    ours.sort();
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (var, value) in ours {
        if var == CONNSTR_FILE {
            entries.push(connstr_file(&var, &value)?);
        } else if let Some(key) = known_name(&var) {
            let value = value.into_string().map_err(|_| ConfigError::Env {
                var: var.clone(),
                reason: "value is not valid UTF-8".into(),
            })?;
            entries.push(entry(key, value, var));
        } else {
            warnings.push(unknown(var));
        }
    }
    if entries.iter().filter(|e| e.key == "base_connstr").count() > 1 {
        return Err(ConfigError::Env {
            var: CONNSTR_FILE.into(),
            reason: format!("cannot be used together with {}", variable("base_connstr")),
        });
    }
    Ok((entries, warnings))
}

/// The key `var` sets: a setting's, or an obsolete one's (warned about by the loader).
fn known_name(var: &str) -> Option<&'static str> {
    let settings = keys::KEYS.iter().map(|key| key.name);
    let obsolete = keys::OBSOLETE.iter().map(|(name, _)| *name);
    settings.chain(obsolete).find(|name| variable(name) == var)
}

fn entry(key: &str, value: String, var: String) -> Entry {
    Entry {
        key: key.into(),
        value: Raw::Text(value),
        origin: Origin::Env(var),
    }
}

/// base_connstr from the file `path` names, one trailing newline dropped. Errors name
/// the variable and the file, never what the file holds.
fn connstr_file(var: &str, path: &OsString) -> Result<Entry, ConfigError> {
    let path = Path::new(path);
    let fail = |reason: String| ConfigError::Env {
        var: var.into(),
        reason: format!("could not load file \"{}\": {reason}", path.display()),
    };
    let bytes = super::source::read(path).map_err(fail)?;
    let mut text = String::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".into()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(entry("base_connstr", text, var.into()))
}

/// A `PGQD_*` variable that sets nothing: probably a typo, so name the closest one.
fn unknown(var: String) -> Warning {
    let closest = keys::KEYS
        .iter()
        .map(|key| variable(key.name))
        .chain([CONNSTR_FILE.to_string()])
        .min_by_key(|candidate| edit_distance(&var.to_uppercase(), candidate))
        .unwrap_or_default();
    Warning {
        message: format!(
            "environment variable {} is not a pgqd setting and is ignored; did you mean {closest}?",
            super::escape(&var)
        ),
        origin: Origin::Env(var),
    }
}
