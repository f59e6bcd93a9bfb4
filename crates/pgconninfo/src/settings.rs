//! The settings of a connection gathered in libpq's order of precedence: what the
//! connection string says, then the service file entry, then the PG* environment
//! variables, then the defaults.
//! Each later source only fills keys still unset (an empty value counts as set, as in
//! libpq, except for the defaults, which also fill empty values).
//!
//! libpq's `conninfo_add_defaults` reads the service file before the environment, so a
//! service entry beats `PGHOST` and friends; its documentation says the same ("a
//! service file setting overrides the corresponding environment variable").

use crate::env::{self, Env};
use crate::error::{ConnInfoError, Origin};
use crate::keys;
use crate::read::read;
use crate::service;
use crate::setting::{Defaults, Setting};

/// The settings of one connection, at most one per key.
#[derive(Debug, Default)]
pub(crate) struct Conninfo(Vec<Setting>);

impl Conninfo {
    /// The settings written in `text` (key=value or URI); later duplicates win.
    pub fn parse(text: &str) -> Result<Conninfo, ConnInfoError> {
        let mut all = Conninfo::default();
        let mut after_secret = false;
        for setting in read(text).into_settings()?.into_iter().map(legacy_alias) {
            match setting.check() {
                Err(ConnInfoError::UnknownKey { .. }) if after_secret => {
                    return Err(ConnInfoError::Syntax(
                        "invalid connection option after a secret value (quote values that contain blanks)".into(),
                    ));
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            after_secret = keys::is_secret(&setting.key);
            all.0.retain(|s| s.key != setting.key);
            all.0.push(setting);
        }
        Ok(all)
    }

    /// Adds the service entry (`service` key or `PGSERVICE`), then the environment.
    pub fn with_fallbacks(mut self, env: Env<'_>) -> Result<Conninfo, ConnInfoError> {
        let service = self.value("service").or_else(|| env("PGSERVICE"));
        if let Some(name) = service.filter(|s| !s.is_empty()) {
            let file = self.value("servicefile").or_else(|| env("PGSERVICEFILE"));
            for setting in service::lookup(&name, file.as_deref(), env)? {
                setting.check()?;
                self.fill(setting);
            }
        }
        for key in keys::KEYS.iter().filter(|k| !k.env.is_empty()) {
            if let Some(value) = env(key.env).filter(|_| self.get(key.name).is_none()) {
                let setting = Setting::new(key.name, value, Origin::Env(key.env));
                setting.check()?;
                self.fill(setting);
            }
        }
        Ok(self)
    }

    /// Fills what is still unset or empty with the defaults: the OS user, the caller's
    /// application name, and the files libpq looks for in the home directory.
    pub fn with_defaults(mut self, defaults: &Defaults, env: Env<'_>) -> Conninfo {
        let home = |name: &str| env::in_home(env, name).map(|p| p.display().to_string());
        let fallbacks = [
            ("user", env::os_user()),
            (
                "fallback_application_name",
                Some(defaults.application_name.clone()),
            ),
            ("passfile", home(".pgpass")),
            ("sslrootcert", home(".postgresql/root.crt")),
            ("sslcrl", home(".postgresql/root.crl")),
            ("sslcert", home(".postgresql/postgresql.crt")),
            ("sslkey", home(".postgresql/postgresql.key")),
        ];
        for (key, value) in fallbacks {
            if let Some(value) = value.filter(|v| !v.is_empty() && self.non_empty(key).is_none()) {
                self.0.retain(|s| s.key != key);
                self.0.push(Setting::new(key, value, Origin::Default));
            }
        }
        self
    }

    /// Sets `setting` unless a source with higher precedence already did.
    fn fill(&mut self, setting: Setting) {
        if self.get(&setting.key).is_none() {
            self.0.push(setting);
        }
    }

    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.0.iter().find(|s| s.key == key)
    }

    fn value(&self, key: &str) -> Option<String> {
        self.get(key).map(|s| s.value.clone())
    }

    /// The value of `key` if set and not empty (libpq treats empty as the default).
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key)
            .map(|s| s.value.as_str())
            .filter(|v| !v.is_empty())
    }

    /// An error about the value of `key`, naming where it came from.
    pub fn invalid(&self, key: &str, reason: &str) -> ConnInfoError {
        let setting = self.get(key).cloned();
        let setting = setting.unwrap_or_else(|| Setting::new(key, "", Origin::Conninfo));
        ConnInfoError::Value {
            key: key.to_string(),
            value: setting.shown(),
            origin: setting.origin,
            reason: reason.to_string(),
        }
    }
}

/// libpq still accepts `requiressl=1` (meaning `sslmode=require`) and `requiressl=0`.
fn legacy_alias(setting: Setting) -> Setting {
    if setting.key != "requiressl" {
        return setting;
    }
    let mode = if setting.value.starts_with('1') {
        "require"
    } else {
        "prefer"
    };
    Setting::new("sslmode", mode, setting.origin)
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

    fn value<'a>(all: &'a Conninfo, key: &str) -> Option<&'a str> {
        all.get(key).map(|s| s.value.as_str())
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
        let all = Conninfo::parse("port=7000 host=''")
            .unwrap()
            .with_fallbacks(&env)
            .unwrap();
        assert_eq!(value(&all, "port"), Some("7000"));
        assert_eq!(value(&all, "user"), Some("from_service"));
        assert_eq!(value(&all, "application_name"), Some("app_env"));
        assert_eq!(value(&all, "host"), Some(""));
        assert!(matches!(
            all.get("user").unwrap().origin,
            Origin::Service { line: 3, .. }
        ));
    }

    /// Unknown keys are refused, and unsupported ones from any source name the source.
    #[test]
    fn refuses_unknown_and_unsupported() {
        let err = Conninfo::parse("host=x bogus=1").unwrap_err().to_string();
        assert_eq!(err, "invalid connection option \"bogus\"");
        let err = Conninfo::parse("postgresql://h?krbsrvname=pg")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"krbsrvname\""), "{err}");
        let env = env_of(&[("PGGSSLIB", "gssapi")]);
        let err = Conninfo::default()
            .with_fallbacks(&env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("(from PGGSSLIB)"), "{err}");
    }

    /// Neither an unquoted password with a blank nor Debug output leaks the password.
    #[test]
    fn never_leaks_passwords() {
        let err = Conninfo::parse("password=top s3cr3t=1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        let all = Conninfo::parse("password=hunter2 requiressl=1").unwrap();
        assert!(!format!("{all:?}").contains("hunter2"));
        assert_eq!(value(&all, "sslmode"), Some("require"));
    }

    /// Defaults fill unset and empty keys only, marked as defaults.
    #[test]
    fn defaults_fill_what_is_unset() {
        let defaults = Defaults {
            application_name: "pgqd".into(),
            connect_timeout: std::time::Duration::ZERO,
        };
        let env = env_of(&[("HOME", "/h")]);
        let all = Conninfo::parse("user='' sslcert=/c")
            .unwrap()
            .with_defaults(&defaults, &env);
        assert_eq!(all.get("user").unwrap().origin, Origin::Default);
        assert_eq!(value(&all, "sslcert"), Some("/c"));
        assert_eq!(value(&all, "passfile"), Some("/h/.pgpass"));
        assert_eq!(value(&all, "fallback_application_name"), Some("pgqd"));
    }
}
