//! The connection options libpq knows, the environment variable behind each, which
//! of them (or which of their values) this implementation honours, and the one list
//! of keys whose values are secrets.
//!
//! A key libpq knows but we cannot honour is refused with a message naming it, never
//! dropped: a user who wrote `krbsrvname` expects Kerberos, and silently connecting
//! some other way would be a surprise. Values that ask for what we do anyway (for
//! example `gssencmode=disable`) are accepted.

use crate::error::{ConnInfoError, Origin};

/// Whether an option is honoured.
#[derive(Debug)]
pub(crate) enum Support {
    Yes,
    /// Accepted only with one of these values (compared without case).
    Only(&'static [&'static str], &'static str),
    /// Refused whatever the value.
    No(&'static str),
}

/// One libpq connection option and its environment variable ("" for none).
#[derive(Debug)]
pub(crate) struct Key {
    pub name: &'static str,
    pub env: &'static str,
    pub support: Support,
}

const fn key(name: &'static str, env: &'static str, support: Support) -> Key {
    Key { name, env, support }
}

use Support::{No, Only, Yes};

const NO_GSS: &str = "GSSAPI and Kerberos are not supported (as with a libpq built without them)";
const NO_OAUTH: &str = "OAuth authentication is not supported";
const NO_SCRAM_KEYS: &str = "SCRAM keys from postgres_fdw are not supported";
const UTF8: &str = "the client encoding is always UTF8";
const PROTOCOL_3: &str = "only protocol version 3.0 is spoken";

/// libpq's options (PostgreSQL 18), in libpq's order.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    key("service", "PGSERVICE", Yes),
    key("servicefile", "PGSERVICEFILE", Yes),
    key("user", "PGUSER", Yes),
    key("password", "PGPASSWORD", Yes),
    key("passfile", "PGPASSFILE", Yes),
    key("channel_binding", "PGCHANNELBINDING", Yes),
    key("connect_timeout", "PGCONNECT_TIMEOUT", Yes),
    key("dbname", "PGDATABASE", Yes),
    key("host", "PGHOST", Yes),
    key("hostaddr", "PGHOSTADDR", Yes),
    key("port", "PGPORT", Yes),
    key("client_encoding", "PGCLIENTENCODING", Only(&["UTF8", "UTF-8", "auto"], UTF8)),
    key("options", "PGOPTIONS", Yes),
    key("application_name", "PGAPPNAME", Yes),
    key("fallback_application_name", "", Yes),
    key("keepalives", "", Yes),
    key("keepalives_idle", "", Yes),
    key("keepalives_interval", "", Yes),
    key("keepalives_count", "", Yes),
    key("tcp_user_timeout", "", Yes),
    key("replication", "", Only(&["0", "false", "off", "no"], "replication connections are not supported")),
    key("sslmode", "PGSSLMODE", Yes),
    key("sslnegotiation", "PGSSLNEGOTIATION", Yes),
    key("sslcompression", "PGSSLCOMPRESSION", Yes),
    key("sslcert", "PGSSLCERT", Yes),
    key("sslkey", "PGSSLKEY", Yes),
    key("sslcertmode", "PGSSLCERTMODE", Only(&["allow", "disable"], "sslcertmode=require is not supported")),
    key("sslpassword", "", No("encrypted client keys are not supported: store the key decrypted (mode 0600)")),
    key("sslrootcert", "PGSSLROOTCERT", Yes),
    key("sslcrl", "PGSSLCRL", Yes),
    key("sslcrldir", "PGSSLCRLDIR", No("CRL directories are not supported: use sslcrl with one file")),
    key("sslsni", "PGSSLSNI", Yes),
    key("sslkeylogfile", "PGSSLKEYLOGFILE", No("TLS key logging is not supported")),
    key("requirepeer", "PGREQUIREPEER", No("peer user checks on unix sockets are not supported")),
    key("require_auth", "PGREQUIREAUTH", No("restricting authentication methods is not supported")),
    key("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION", Yes),
    key("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION", Yes),
    key("min_protocol_version", "PGMINPROTOCOLVERSION", Only(&["3.0"], PROTOCOL_3)),
    key("max_protocol_version", "PGMAXPROTOCOLVERSION", Only(&["3.0", "latest"], PROTOCOL_3)),
    key("gssencmode", "PGGSSENCMODE", Only(&["disable", "prefer"], NO_GSS)),
    key("krbsrvname", "PGKRBSRVNAME", No(NO_GSS)),
    key("gsslib", "PGGSSLIB", No(NO_GSS)),
    key("gssdelegation", "PGGSSDELEGATION", Only(&["0"], NO_GSS)),
    key("target_session_attrs", "PGTARGETSESSIONATTRS", Yes),
    key("load_balance_hosts", "PGLOADBALANCEHOSTS", Yes),
    key("scram_client_key", "", No(NO_SCRAM_KEYS)),
    key("scram_server_key", "", No(NO_SCRAM_KEYS)),
    key("oauth_issuer", "", No(NO_OAUTH)),
    key("oauth_client_id", "", No(NO_OAUTH)),
    key("oauth_client_secret", "", No(NO_OAUTH)),
    key("oauth_scope", "", No(NO_OAUTH)),
];

/// libpq's options whose values are secrets.
pub(crate) const SECRET_KEYS: &[&str] = &[
    "password",
    "sslpassword",
    "scram_client_key",
    "scram_server_key",
    "oauth_client_secret",
];

/// Parts of a key's name (compared without case) that make its value a secret, so a
/// misspelt or mis-cased key (`PASSWORD`, `db_passwd`, `my_secret`) is kept hidden too.
const SECRET_WORDS: &[&str] = &["pass", "pwd", "secret", "_key"];

/// The option called `name`, if libpq has one.
pub(crate) fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Whether the value of `name` must never be shown: one of [`SECRET_KEYS`], or any
/// key named like a secret (libpq's `passfile`, a path, aside).
pub(crate) fn is_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_KEYS.contains(&lower.as_str())
        || (lower != "passfile" && SECRET_WORDS.iter().any(|w| lower.contains(w)))
}

/// Whether the value of `name` may be shown in messages and displays: only
/// for keys libpq knows that are not secrets. An unknown key may be a misspelt secret.
pub(crate) fn shows_value(name: &str) -> bool {
    lookup(name).is_some() && !is_secret(name)
}

/// An unknown option's name as an error shows it: a misspelt keyword is shown, but a
/// "name" that is no word (a URI read as key=value text, `;postgresql://user:secret@h`)
/// may hold a secret and is not.
fn shown_name(name: &str) -> String {
    let word = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if word {
        name.to_string()
    } else {
        "(a name that is no word, not shown)".to_string()
    }
}

/// Accepts the setting `name=value` from `origin` if libpq knows the key and we
/// honour the key and its value.
pub(crate) fn check(name: &str, value: &str, origin: &Origin) -> Result<(), ConnInfoError> {
    let Some(key) = lookup(name) else {
        return Err(ConnInfoError::UnknownKey {
            key: shown_name(name),
            origin: origin.clone(),
        });
    };
    let refused = |reason: &str| ConnInfoError::Unsupported {
        key: name.to_string(),
        origin: origin.clone(),
        reason: reason.to_string(),
    };
    match key.support {
        Yes => Ok(()),
        Only(values, _) if values.iter().any(|v| v.eq_ignore_ascii_case(value)) => Ok(()),
        Only(values, reason) => Err(refused(&format!(
            "value \"{}\" not supported: {reason} (accepted: {})",
            value.escape_debug(),
            values.join(", ")
        ))),
        No(reason) => Err(refused(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unsupported keys are refused by name; harmless values of partly supported keys pass.
    #[test]
    fn refuses_what_cannot_be_honoured() {
        let err = check("krbsrvname", "postgres", &Origin::Conninfo).unwrap_err();
        assert!(err.to_string().contains("\"krbsrvname\""), "{err}");
        let err = check("gssencmode", "require", &Origin::Env("PGGSSENCMODE")).unwrap_err();
        assert!(err.to_string().contains("(from PGGSSENCMODE)"), "{err}");
        assert!(check("gssencmode", "disable", &Origin::Conninfo).is_ok());
        assert!(check("client_encoding", "utf8", &Origin::Conninfo).is_ok());
        let err = check("nosuchkey", "1", &Origin::Conninfo).unwrap_err();
        assert_eq!(err.to_string(), "invalid connection option \"nosuchkey\"");
    }

    /// Every environment variable maps to one key only.
    #[test]
    fn env_vars_are_unique() {
        let mut vars: Vec<_> = KEYS
            .iter()
            .map(|k| k.env)
            .filter(|e| !e.is_empty())
            .collect();
        let total = vars.len();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), total);
    }

    /// libpq's secrets, and keys named like one in any case, are secret; paths are not.
    #[test]
    fn secret_keys() {
        for key in SECRET_KEYS
            .iter()
            .chain(&["PASSWORD", "Db_Passwd", "my_secret", "x_KEY"])
        {
            assert!(is_secret(key) && !shows_value(key), "{key}");
        }
        for key in ["passfile", "sslkey", "sslcert", "host", "user"] {
            assert!(!is_secret(key) && shows_value(key), "{key}");
        }
        assert!(
            !shows_value("hots"),
            "an unknown key may be a misspelt secret"
        );
    }
}
