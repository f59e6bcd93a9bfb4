//! Resolving from bytes: `base_connstr`, an injected environment and files in a temp
//! dir to the target's hosts, user, password and TLS set-up; no server needed.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::tls::SslMode;
use crate::typed::SessionAttrs;

fn defaults() -> Defaults {
    Defaults {
        application_name: "pgqd".into(),
        connect_timeout: Duration::from_secs(10),
    }
}

/// An environment with only `vars`, and HOME pointing at `home` (so no real
/// ~/.pgpass or ~/.postgresql is read).
fn env_of(
    home: &std::path::Path,
    vars: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + use<> {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.insert("HOME".into(), home.display().to_string());
    map.entry("PGSYSCONFDIR".into())
        .or_insert_with(|| home.display().to_string());
    move |name| map.get(name).cloned()
}

fn resolve_in(
    home: &std::path::Path,
    base: &str,
    vars: &[(&str, &str)],
) -> Result<Target, ConnInfoError> {
    resolve_with(&ConnStr::new(base), "db", &defaults(), &env_of(home, vars))
}

fn config(target: &Target, index: usize) -> &tokio_postgres::Config {
    &target.endpoints[index].config
}

/// The password host `index` would log in with now: set, or from the password file.
fn password(target: &Target, index: usize) -> Option<String> {
    let endpoint = &target.endpoints[index];
    match endpoint.config.get_password() {
        Some(set) => Some(String::from_utf8(set.to_vec()).unwrap()),
        None => endpoint.passfile.as_ref()?.find().password,
    }
}

/// Neither Display nor Debug of ConnStr, nor Debug of a Target, shows the password.
#[test]
fn never_shows_password() {
    let c = ConnStr::new("host=x password=hunter2");
    assert!(!format!("{c} {c:?}").contains("hunter2"));
    assert_eq!(c.expose(), "host=x password=hunter2");
    assert!(c.has_password());
    assert!(ConnStr::new("postgresql://u:hunter2@h").has_password());
    assert!(!ConnStr::new("host=x").has_password());
    assert!(ConnStr::new("password=x gssencmode=require").has_password());
    let home = tempfile::tempdir().unwrap();
    let target = resolve_in(home.path(), "host=h password=hunter2", &[]).unwrap();
    let shown = format!("{target:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("********"),
        "{shown}"
    );
}

/// The database name always comes from the caller, whatever the string says.
#[test]
fn dbname_always_wins() {
    let home = tempfile::tempdir().unwrap();
    for base in ["dbname=other host=h", "postgresql://h/other"] {
        let target = resolve_in(home.path(), base, &[("PGDATABASE", "envdb")]).unwrap();
        assert_eq!(config(&target, 0).get_dbname(), Some("db"));
    }
}

/// Several hosts pair with one port each (or one for all); hostaddr goes with host.
#[test]
fn several_hosts_and_ports() {
    let home = tempfile::tempdir().unwrap();
    let target = resolve_in(home.path(), "host=a,/sock,b port=1,2,", &[]).unwrap();
    assert_eq!(
        target.servers(),
        [
            "server at \"a\", port 1",
            "server on socket \"/sock/.s.PGSQL.2\"",
            "server at \"b\", port 5432"
        ]
    );
    let target = resolve_in(home.path(), "host=a,b hostaddr=127.0.0.1,::1 port=7", &[]).unwrap();
    assert_eq!(target.servers()[1], "server at \"b\" (::1), port 7");
    let err = resolve_in(home.path(), "host=a,b port=1,2,3", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "could not match 3 port numbers to 2 hosts");
    let err = resolve_in(home.path(), "host=a,b hostaddr=127.0.0.1", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "could not match 2 host names to 1 hostaddr values");
    let err = resolve_in(home.path(), "hostaddr=nohost", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("could not parse network address"), "{err}");
    let err = resolve_in(home.path(), "port=99999", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid port number"), "{err}");
}

/// No host means a unix socket in a default directory; no user means the OS user.
#[test]
fn libpq_defaults() {
    let home = tempfile::tempdir().unwrap();
    let target = resolve_in(home.path(), "", &[]).unwrap();
    assert!(target.endpoints[0].socket);
    let port = config(&target, 0).get_ports()[0];
    assert_eq!(port, 5432);
    assert_eq!(config(&target, 0).get_user(), env::os_user().as_deref());
    assert_eq!(config(&target, 0).get_application_name(), Some("pgqd"));
    assert_eq!(target.timeout, Some(Duration::from_secs(10)));
    assert_eq!(target.sslmode, SslMode::Prefer);
    assert!(target.tls.is_none(), "no TLS set-up for unix sockets");
}

/// The PG* variables fill what the string leaves unset; the string wins.
#[test]
fn environment_fills_gaps() {
    let home = tempfile::tempdir().unwrap();
    let vars = [
        ("PGHOST", "envhost"),
        ("PGPORT", "6543"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGAPPNAME", "envapp"),
        ("PGCONNECT_TIMEOUT", "1"),
        ("PGOPTIONS", "-c work_mem=1MB"),
        ("PGTARGETSESSIONATTRS", "standby"),
        ("PGSSLMODE", "disable"),
    ];
    let target = resolve_in(home.path(), "user=mine", &vars).unwrap();
    let c = config(&target, 0);
    assert_eq!(target.servers(), ["server at \"envhost\", port 6543"]);
    assert_eq!(c.get_user(), Some("mine"));
    assert_eq!(c.get_password(), Some(&b"envpw"[..]));
    assert_eq!(c.get_application_name(), Some("envapp"));
    assert_eq!(c.get_options(), Some("-c work_mem=1MB"));
    assert_eq!(
        target.timeout,
        Some(Duration::from_secs(2)),
        "libpq raises 1 s to 2 s"
    );
    assert_eq!(target.attrs, SessionAttrs::Standby);
    assert_eq!(target.sslmode, SslMode::Disable);
    let target = resolve_in(home.path(), "connect_timeout=0", &[]).unwrap();
    assert_eq!(target.timeout, None, "0 means no limit, as in libpq");
}

/// The password file is used per host when no password is set, `localhost` matching
/// the default socket directories; a loose file is ignored with a warning.
#[test]
fn password_file() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".pgpass");
    let lines =
        "localhost:5432:db:u:sockpw\n/own/dir:*:*:u:dirpw\nh2:*:db:u:h2pw\n*:*:other:*:no\n";
    std::fs::write(&file, lines).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let target = resolve_in(home.path(), "user=u host=/tmp,/own/dir,h2,h3", &[]).unwrap();
    let passwords: Vec<_> = (0..4).map(|i| password(&target, i)).collect();
    let expected = [Some("sockpw"), Some("dirpw"), Some("h2pw"), None].map(|p| p.map(String::from));
    assert_eq!(passwords, expected);
    assert!(target.warnings().is_empty());
    let target = resolve_in(home.path(), "user=u host=h2 password=explicit", &[]).unwrap();
    assert_eq!(password(&target, 0).as_deref(), Some("explicit"));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let target = resolve_in(home.path(), "user=u host=h2", &[]).unwrap();
    assert_eq!(password(&target, 0), None);
    assert!(
        target.warnings()[0].contains("has group or world access"),
        "{:?}",
        target.warnings()
    );

    let other = home.path().join("elsewhere");
    std::fs::write(&other, "*:*:*:*:frompgpassfile\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vars = [("PGPASSFILE", other.to_str().unwrap())];
    let target = resolve_in(home.path(), "host=h2", &vars).unwrap();
    assert_eq!(password(&target, 0).as_deref(), Some("frompgpassfile"));
}

/// A service named in the string or by PGSERVICE supplies settings; the string wins.
#[test]
fn service_file() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".pg_service.conf"),
        "[svc]\nhost=svchost\nport=7777\nuser=svcuser\n",
    )
    .unwrap();
    let target = resolve_in(home.path(), "service=svc user=mine", &[]).unwrap();
    assert_eq!(target.servers(), ["server at \"svchost\", port 7777"]);
    assert_eq!(config(&target, 0).get_user(), Some("mine"));
    let target = resolve_in(home.path(), "", &[("PGSERVICE", "svc"), ("PGPORT", "1")]).unwrap();
    assert_eq!(
        config(&target, 0).get_ports(),
        [7777],
        "service beats environment, as in libpq"
    );
    let err = resolve_in(home.path(), "service=nope", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "definition of service \"nope\" not found");
}

/// TLS modes: verify modes need a root certificate; system roots need verify-full.
#[test]
fn tls_requirements() {
    let home = tempfile::tempdir().unwrap();
    let target = resolve_in(home.path(), "host=h sslmode=require", &[]).unwrap();
    assert_eq!(target.verification, Some(tls::Verification::None));
    let err = resolve_in(home.path(), "host=h sslmode=verify-ca", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("root.crt\" does not exist"), "{err}");
    let err = resolve_in(
        home.path(),
        "host=h sslrootcert=system sslmode=require",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("verify-full"), "{err}");
    let err = resolve_in(home.path(), "hostaddr=127.0.0.1 sslmode=verify-full", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("host name must be specified"), "{err}");
    let err = resolve_in(home.path(), "host=h ssl_min_protocol_version=TLSv1.1", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("before 1.2"), "{err}");
    let target = resolve_in(home.path(), "host=/sock sslmode=verify-full", &[]).unwrap();
    assert!(
        target.tls.is_none(),
        "no certificates needed for a unix socket"
    );
}

/// validate() checks syntax, keys and values without environment or files.
#[test]
fn validate_checks_text_only() {
    assert!(
        validate(&ConnStr::new(
            "host=h port=5433 sslmode=verify-full service=x"
        ))
        .is_ok()
    );
    assert!(
        validate(&ConnStr::new(
            "postgresql://u:p@h1,h2/db?target_session_attrs=primary"
        ))
        .is_ok()
    );
    for (bad, expected) in [
        ("gssencmode=require", "\"gssencmode\""),
        ("krbsrvname=x", "\"krbsrvname\""),
        ("sslmode=sure", "expected one of disable, allow"),
        ("target_session_attrs=primary-ish", "target_session_attrs"),
        ("keepalives_idle=soon", "not an integer"),
        ("host='x", "unterminated"),
        (
            "ssl_max_protocol_version=TLSv2",
            "expected TLSv1.2 or TLSv1.3",
        ),
    ] {
        let err = validate(&ConnStr::new(bad)).unwrap_err().to_string();
        assert!(err.contains(expected), "{bad}: {err}");
    }
}

/// The strings of the secrets-in-errors report: neither `--check`'s display of
/// base_connstr nor the validation error shows the secret, whatever the key's case.
#[test]
fn errors_never_show_secrets() {
    for (text, secret) in [
        ("host=/x PASSWORD=S3cretZz", "S3cretZz"),
        ("host=/x scram_client_key=S3CRETKEY", "S3CRETKEY"),
        ("host=/x scram_server_key=S3CRETKEY", "S3CRETKEY"),
        ("host=/x oauth_client_secret=S3CRETKEY", "S3CRETKEY"),
        ("host=/x passwrod=S3cretZz", "S3cretZz"),
        ("postgresql://h?PassWord=S3cretZz", "S3cretZz"),
    ] {
        let base = ConnStr::new(text);
        let error = validate(&base).unwrap_err();
        let shown = format!("{base} {base:?} {error} {error:?}");
        assert!(!shown.contains(secret), "{shown}");
    }
}

/// An unknown option whose name is no word (a URI with a character in front, read
/// as key=value text) is refused without echoing that name: it holds the password.
#[test]
fn unknown_names_that_are_no_words_are_not_shown() {
    let secret = "PwvZ6b3mFQi";
    let text = format!(";postgresql://user:{secret}@host=/tmp/db?x sslmode=verify-full");
    let err = validate(&ConnStr::new(text)).unwrap_err().to_string();
    assert!(!err.contains(secret), "{err}");
    let err = validate(&ConnStr::new("hots=/tmp"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"hots\""),
        "a misspelt keyword is named: {err}"
    );
}

/// Settings as `(key, value)` pairs, for comparing a reader's output.
pub(crate) fn pairs_of(settings: Vec<crate::setting::Setting>) -> Vec<(String, String)> {
    settings.into_iter().map(|s| (s.key, s.value)).collect()
}

/// Borrowed pairs as owned ones.
pub(crate) fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
