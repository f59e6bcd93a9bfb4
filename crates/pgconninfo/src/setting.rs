//! The two small types the readers and the resolver share: one connection setting
//! (key, value and where it came from), and the defaults the caller adds.

use std::fmt;
use std::time::Duration;

use crate::error::{ConnInfoError, Origin};
use crate::keys;

/// One `key=value` setting, value unescaped. `Debug` shows the value only when its key
/// is a known, non-secret option ([`keys::shows_value`]).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

impl Setting {
    pub fn new(key: impl Into<String>, value: impl Into<String>, origin: Origin) -> Setting {
        let (key, value) = (key.into(), value.into());
        Setting { key, value, origin }
    }

    /// The value quoted for a message, or `(hidden)` when it may be a secret.
    pub fn shown(&self) -> String {
        match keys::shows_value(&self.key) {
            true => format!("\"{}\"", self.value.escape_debug()),
            false => "(hidden)".into(),
        }
    }

    /// Accepts the setting if libpq knows its key and we honour the key and its value.
    pub fn check(&self) -> Result<(), ConnInfoError> {
        keys::check(&self.key, &self.value, &self.origin)
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}{}", self.key, self.shown(), self.origin)
    }
}

/// Settings the caller adds unless the connection settings say otherwise.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Used when neither `application_name` nor `fallback_application_name` is set.
    pub application_name: String,
    /// Used when `connect_timeout` is not set (anywhere).
    pub connect_timeout: Duration,
}
