//! A connection string as the caller holds it: the text, never shown with its
//! password, and the check that a file holding one is not readable by others.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keys;
use crate::read::read;
use crate::redact::redact;

/// A connection string (key=value or URI) as written in a config. `Display`, `Debug`
/// and `Serialize` mask any password, so it can go into logs and config dumps.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnStr(String);

impl ConnStr {
    /// Wraps the text as written; nothing is checked yet (see [`crate::validate`]).
    pub fn new(text: impl Into<String>) -> Self {
        ConnStr(text.into())
    }

    /// The real text, password included: only for building connections.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the text sets a secret (a password, in key=value form, a URI's user info
    /// or query), for the warning about config files readable by others.
    pub(crate) fn has_password(&self) -> bool {
        // Only the syntax matters here: a string with an unsupported key still holds
        // its password. Text that does not even parse is assumed to hold one.
        read(&self.0).into_settings().map_or(true, |all| {
            (all.iter()).any(|s| keys::is_secret(&s.key) && !s.value.is_empty())
        })
    }
}

impl fmt::Display for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnStr({:?})", redact(&self.0))
    }
}

impl Serialize for ConnStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.0))
    }
}

impl<'de> Deserialize<'de> for ConnStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ConnStr)
    }
}

/// A warning when `file` (a config file) holds the password of `base` and group or
/// others may read it, in the spirit of libpq's check on the password file.
pub fn exposed_password(file: &Path, base: &ConnStr) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    (base.has_password() && mode & 0o077 != 0).then(|| {
        format!(
            "config file \"{}\" holds a password in base_connstr and has group or world access; permissions should be u=rw (0600) or less",
            file.display()
        )
    })
}
