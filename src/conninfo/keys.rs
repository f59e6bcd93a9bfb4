//! The connection options libpq knows, the environment variable behind each, and
//! which of them (or which of their values) this implementation honours.
//!
//! A key libpq knows but we cannot honour is refused with a message naming it, never
//! dropped: a user who wrote `krbsrvname` expects Kerberos, and silently connecting
//! some other way would be a surprise. Values that ask for what we do anyway (for
//! example `gssencmode=disable`) are accepted.

use super::error::{ConnInfoError, Origin};

/// Whether an option is honoured.
#[derive(Debug)]
pub(super) enum Support {
    Yes,
    /// Accepted only with one of these values (compared without case).
    Only(&'static [&'static str], &'static str),
    /// Refused whatever the value.
    No(&'static str),
}

/// One libpq connection option.
#[derive(Debug)]
pub(super) struct Key {
    pub name: &'static str,
    pub env: Option<&'static str>,
    pub support: Support,
}

const fn key(name: &'static str, env: Option<&'static str>, support: Support) -> Key {
    Key { name, env, support }
}

use Support::{No, Only, Yes};

const NO_GSS: &str = "GSSAPI and Kerberos are not supported (as with a libpq built without them)";
const NO_OAUTH: &str = "OAuth authentication is not supported";

/// libpq's options (PostgreSQL 18), in libpq's order.
pub(super) const KEYS: &[Key] = &[
    key("service", Some("PGSERVICE"), Yes),
    key("servicefile", Some("PGSERVICEFILE"), Yes),
    key("user", Some("PGUSER"), Yes),
    key("password", Some("PGPASSWORD"), Yes),
    key("passfile", Some("PGPASSFILE"), Yes),
    key("channel_binding", Some("PGCHANNELBINDING"), Yes),
    key("connect_timeout", Some("PGCONNECT_TIMEOUT"), Yes),
    key("dbname", Some("PGDATABASE"), Yes),
    key("host", Some("PGHOST"), Yes),
    key("hostaddr", Some("PGHOSTADDR"), Yes),
    key("port", Some("PGPORT"), Yes),
    key(
        "client_encoding",
        Some("PGCLIENTENCODING"),
        Only(
            &["UTF8", "UTF-8", "auto"],
            "the client encoding is always UTF8",
        ),
    ),
    key("options", Some("PGOPTIONS"), Yes),
    key("application_name", Some("PGAPPNAME"), Yes),
    key("fallback_application_name", None, Yes),
    key("keepalives", None, Yes),
    key("keepalives_idle", None, Yes),
    key("keepalives_interval", None, Yes),
    key("keepalives_count", None, Yes),
    key("tcp_user_timeout", None, Yes),
    key(
        "replication",
        None,
        Only(
            &["0", "false", "off", "no"],
            "replication connections are not supported",
        ),
    ),
    key("sslmode", Some("PGSSLMODE"), Yes),
    key("sslnegotiation", Some("PGSSLNEGOTIATION"), Yes),
    key("sslcompression", Some("PGSSLCOMPRESSION"), Yes),
    key("sslcert", Some("PGSSLCERT"), Yes),
    key("sslkey", Some("PGSSLKEY"), Yes),
    key(
        "sslcertmode",
        Some("PGSSLCERTMODE"),
        Only(
            &["allow", "disable"],
            "sslcertmode=require is not supported",
        ),
    ),
    key(
        "sslpassword",
        None,
        No("encrypted client keys are not supported: store the key decrypted (mode 0600)"),
    ),
    key("sslrootcert", Some("PGSSLROOTCERT"), Yes),
    key("sslcrl", Some("PGSSLCRL"), Yes),
    key(
        "sslcrldir",
        Some("PGSSLCRLDIR"),
        No("CRL directories are not supported: use sslcrl with one file"),
    ),
    key("sslsni", Some("PGSSLSNI"), Yes),
    key(
        "sslkeylogfile",
        Some("PGSSLKEYLOGFILE"),
        No("TLS key logging is not supported"),
    ),
    key(
        "requirepeer",
        Some("PGREQUIREPEER"),
        No("peer user checks on unix sockets are not supported"),
    ),
    key(
        "require_auth",
        Some("PGREQUIREAUTH"),
        No("restricting authentication methods is not supported"),
    ),
    key(
        "ssl_min_protocol_version",
        Some("PGSSLMINPROTOCOLVERSION"),
        Yes,
    ),
    key(
        "ssl_max_protocol_version",
        Some("PGSSLMAXPROTOCOLVERSION"),
        Yes,
    ),
    key(
        "min_protocol_version",
        Some("PGMINPROTOCOLVERSION"),
        Only(&["3.0"], "only protocol version 3.0 is spoken"),
    ),
    key(
        "max_protocol_version",
        Some("PGMAXPROTOCOLVERSION"),
        Only(&["3.0", "latest"], "only protocol version 3.0 is spoken"),
    ),
    key(
        "gssencmode",
        Some("PGGSSENCMODE"),
        Only(&["disable", "prefer"], NO_GSS),
    ),
    key("krbsrvname", Some("PGKRBSRVNAME"), No(NO_GSS)),
    key("gsslib", Some("PGGSSLIB"), No(NO_GSS)),
    key(
        "gssdelegation",
        Some("PGGSSDELEGATION"),
        Only(&["0"], NO_GSS),
    ),
    key("target_session_attrs", Some("PGTARGETSESSIONATTRS"), Yes),
    key("load_balance_hosts", Some("PGLOADBALANCEHOSTS"), Yes),
    key(
        "scram_client_key",
        None,
        No("SCRAM keys from postgres_fdw are not supported"),
    ),
    key(
        "scram_server_key",
        None,
        No("SCRAM keys from postgres_fdw are not supported"),
    ),
    key("oauth_issuer", None, No(NO_OAUTH)),
    key("oauth_client_id", None, No(NO_OAUTH)),
    key("oauth_client_secret", None, No(NO_OAUTH)),
    key("oauth_scope", None, No(NO_OAUTH)),
];

/// The option called `name`, if libpq has one.
pub(super) fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Keys whose values must never be shown.
pub(super) fn is_secret(name: &str) -> bool {
    matches!(
        name,
        "password"
            | "sslpassword"
            | "oauth_client_secret"
            | "scram_client_key"
            | "scram_server_key"
    )
}

/// Accepts `name=value` from `origin` if libpq knows the key and we honour it.
pub(super) fn check(
    name: &str,
    value: &str,
    origin: &Origin,
) -> Result<&'static Key, ConnInfoError> {
    let Some(key) = lookup(name) else {
        return Err(ConnInfoError::UnknownKey {
            key: name.to_string(),
            origin: origin.clone(),
        });
    };
    let refused = |reason: &str| ConnInfoError::Unsupported {
        key: name.to_string(),
        origin: origin.clone(),
        reason: reason.to_string(),
    };
    match key.support {
        Yes => Ok(key),
        Only(values, _) if values.iter().any(|v| v.eq_ignore_ascii_case(value)) => Ok(key),
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
        let mut vars: Vec<_> = KEYS.iter().filter_map(|k| k.env).collect();
        let total = vars.len();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), total);
    }
}
