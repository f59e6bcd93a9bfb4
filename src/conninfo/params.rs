//! The connection settings as text, gathered in libpq's order of precedence: what
//! `base_connstr` says, then the service file entry, then the PG* environment
//! variables. Each later source only fills keys still unset (an empty value counts as
//! set, as in libpq). Defaults come last, in `settings.rs`.
//!
//! libpq's `conninfo_add_defaults` reads the service file before the environment, so a
//! service entry beats `PGHOST` and friends; its documentation says the same ("a
//! service file setting overrides the corresponding environment variable").

use std::collections::BTreeMap;

use super::env::Env;
use super::error::{ConnInfoError, Origin};
use super::parse::{self, Pair};
use super::{keys, service, uri};

/// One setting and where it came from.
#[derive(Clone)]
pub(super) struct Param {
    pub value: String,
    pub origin: Origin,
}

/// Settings by key. `Debug` never shows secret values.
#[derive(Clone, Default)]
pub(super) struct Params {
    map: BTreeMap<&'static str, Param>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (key, param) in &self.map {
            let value = if keys::is_secret(key) {
                "********"
            } else {
                &param.value
            };
            map.entry(key, &value);
        }
        map.finish()
    }
}

impl Params {
    /// The settings written in `text` (key=value or URI); later duplicates win.
    pub fn from_conninfo(text: &str) -> Result<Params, ConnInfoError> {
        let text = text.trim();
        let pairs = if uri::is_uri(text) {
            uri::pairs(text)?
        } else {
            parse::key_values(text)?
        };
        let mut params = Params::default();
        let mut previous_secret = false;
        for Pair { key, value } in pairs {
            let (key, value) = legacy_alias(key, value);
            match keys::check(&key, &value, &Origin::Conninfo) {
                Ok(known) => params.set(known.name, value, Origin::Conninfo),
                Err(ConnInfoError::UnknownKey { .. }) if previous_secret => {
                    return Err(ConnInfoError::Syntax(
                        "invalid connection option after a secret value (quote values that contain blanks)".into(),
                    ));
                }
                Err(e) => return Err(e),
            }
            previous_secret = keys::is_secret(&key);
        }
        Ok(params)
    }

    /// Adds the service entry (`service` key or `PGSERVICE`), then the environment.
    pub fn with_fallbacks(mut self, env: Env<'_>) -> Result<Params, ConnInfoError> {
        let service = self
            .get("service")
            .map(str::to_string)
            .or_else(|| env("PGSERVICE"));
        if let Some(name) = service.filter(|s| !s.is_empty()) {
            let user_file = self
                .get("servicefile")
                .map(str::to_string)
                .or_else(|| env("PGSERVICEFILE"));
            for setting in service::lookup(&name, user_file.as_deref(), env)? {
                let origin = Origin::Service {
                    file: setting.file,
                    line: setting.line,
                };
                let known = keys::check(&setting.key, &setting.value, &origin)?;
                self.fill(known.name, setting.value, origin);
            }
        }
        for key in keys::KEYS {
            let Some(var) = key.env else { continue };
            if self.map.contains_key(key.name) {
                continue;
            }
            if let Some(value) = env(var) {
                keys::check(key.name, &value, &Origin::Env(var))?;
                self.fill(key.name, value, Origin::Env(var));
            }
        }
        Ok(self)
    }

    fn set(&mut self, key: &'static str, value: String, origin: Origin) {
        self.map.insert(key, Param { value, origin });
    }

    /// Sets `key` unless a source with higher precedence already did.
    fn fill(&mut self, key: &'static str, value: String, origin: Origin) {
        self.map.entry(key).or_insert(Param { value, origin });
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|p| p.value.as_str())
    }

    /// The value of `key` if set and not empty (libpq treats empty as the default).
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    #[cfg(test)]
    pub fn param(&self, key: &str) -> Option<&Param> {
        self.map.get(key)
    }

    /// An error about the value of `key`, naming where it came from.
    pub fn invalid(&self, key: &str, reason: &str) -> ConnInfoError {
        let param = self.map.get(key);
        let origin = param.map_or(Origin::Conninfo, |p| p.origin.clone());
        ConnInfoError::value(key, param.map_or("", |p| &p.value), &origin, reason)
    }
}

/// libpq still accepts `requiressl=1` (meaning `sslmode=require`) and `requiressl=0`.
fn legacy_alias(key: String, value: String) -> (String, String) {
    if key != "requiressl" {
        return (key, value);
    }
    let mode = if value.starts_with('1') {
        "require"
    } else {
        "prefer"
    };
    ("sslmode".into(), mode.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// Conninfo beats the service file, which beats the environment; empty counts as set.
    #[test]
    fn precedence_is_libpq_s() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services");
        std::fs::write(&file, "[svc]\nport=6000\nuser=from_service\n").unwrap();
        let env = env_of(&[
            ("PGSERVICEFILE", file.to_str().unwrap()),
            ("PGSERVICE", "svc"),
            ("PGUSER", "from_env"),
            ("PGAPPNAME", "app_env"),
            ("PGHOST", "env_host"),
            ("PGSYSCONFDIR", "/nonexistent"),
        ]);
        let params = Params::from_conninfo("port=7000 host=''")
            .unwrap()
            .with_fallbacks(&env)
            .unwrap();
        assert_eq!(params.get("port"), Some("7000"));
        assert_eq!(params.get("user"), Some("from_service"));
        assert_eq!(params.get("application_name"), Some("app_env"));
        assert_eq!(params.get("host"), Some(""));
        assert!(matches!(
            params.param("user").unwrap().origin,
            Origin::Service { line: 3, .. }
        ));
    }

    /// Unknown keys are refused, and unsupported ones from any source name the source.
    #[test]
    fn refuses_unknown_and_unsupported() {
        let err = Params::from_conninfo("host=x bogus=1")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid connection option \"bogus\"");
        let err = Params::from_conninfo("postgresql://h?krbsrvname=pg")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"krbsrvname\""), "{err}");
        let env = env_of(&[("PGGSSLIB", "gssapi")]);
        let err = Params::default()
            .with_fallbacks(&env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("(from PGGSSLIB)"), "{err}");
    }

    /// Neither an unquoted password with a blank nor Debug output leaks the password.
    #[test]
    fn never_leaks_passwords() {
        let err = Params::from_conninfo("password=top s3cr3t=1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        let params = Params::from_conninfo("password=hunter2 requiressl=1").unwrap();
        assert!(!format!("{params:?}").contains("hunter2"));
        assert_eq!(params.get("sslmode"), Some("require"));
    }
}
