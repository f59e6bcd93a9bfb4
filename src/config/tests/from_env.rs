//! `PGQD_*` variables: every key, precedence over the file, the same typing and
//! validation, errors naming the variable, `PGQD_BASE_CONNSTR_FILE`, and warnings for
//! unknown names.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::super::*;

type Vars = Vec<(OsString, OsString)>;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

/// A config file with `text` in a fresh directory (kept alive by the returned guard).
fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.ini");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn with_env(text: &str, env: Vars) -> Result<Loaded, ConfigError> {
    let (_dir, path) = file(text);
    load_with_env(&path, env)
}

fn env_error(env: Vars) -> String {
    with_env("[pgqd]\n", env).unwrap_err().to_string()
}

/// Every key can be set as `PGQD_<KEY>`, with the same result as the same text in
/// pgqd.ini.
#[test]
fn every_key_from_the_environment() {
    let settings = [
        ("logfile", "/tmp/l.log"),
        ("pidfile", "/tmp/p.pid"),
        ("base_connstr", "host=/tmp port=5433"),
        ("initial_database", "postgres"),
        ("database_list", "a, b ,c"),
        ("syslog", "0x0"),
        ("syslog_ident", "tick"),
        ("syslog_facility", "local3"),
        ("check_period", "5"),
        ("maint_period", "7.5"),
        ("retry_period", "3"),
        ("ticker_period", "0.1"),
        ("stats_period", "10"),
        ("connection_lifetime", "600"),
        ("ticker_timeout", "4"),
        ("retry_timeout", "20"),
        ("maint_timeout", "300"),
        ("connect_timeout", "2"),
        ("log_format", "json"),
        ("http_listen", "127.0.0.1:10187"),
        ("http_web_config", "/etc/pgqd/web.yml"),
        ("http_healthcheck_config", "/etc/pgqd/healthcheck.yml"),
        ("queue_stats_period", "15"),
        ("leader_lock", "0"),
        ("foreign_ticker", "yield"),
    ];
    assert_eq!(settings.len(), known_keys().len());
    let ini: String = settings
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let from_file = with_env(&format!("[pgqd]\n{ini}"), Vec::new()).unwrap();
    let env = settings
        .iter()
        .map(|(k, v)| (format!("PGQD_{}", k.to_uppercase()).into(), (*v).into()))
        .collect();
    let from_env = with_env("[pgqd]\n", env).unwrap();
    assert_eq!(from_env.config, from_file.config);
    assert_ne!(from_env.config, Config::default());
    assert!(from_env.warnings.is_empty(), "{:?}", from_env.warnings);
    for key in known_keys() {
        let want = Origin::Env(format!("PGQD_{}", key.to_uppercase()));
        assert_eq!(from_env.origins.of(&key), &want);
    }
}

/// PGQD_* beats the file, the file beats the defaults, and each value knows its origin.
#[test]
fn precedence_and_origins() {
    let (_dir, path) = file("[pgqd]\nticker_period = 2\nstats_period = 5\n");
    let env = vars(&[("PGQD_TICKER_PERIOD", "3"), ("PGQD_LOGFILE", "")]);
    let loaded = load_with_env(&path, env).unwrap();
    assert_eq!(loaded.config.ticker_period, Duration::from_secs(3));
    assert_eq!(loaded.config.stats_period, Duration::from_secs(5));
    assert_eq!(loaded.config.check_period, Duration::from_secs(60));
    let origins = &loaded.origins;
    assert_eq!(
        origins.of("ticker_period"),
        &Origin::Env("PGQD_TICKER_PERIOD".into())
    );
    assert_eq!(
        origins.of("stats_period"),
        &Origin::File {
            file: path.clone(),
            line: 3
        }
    );
    assert_eq!(origins.of("check_period"), &Origin::Default);
    let shown = loaded.config.explained(origins);
    assert!(
        shown.contains("# from PGQD_TICKER_PERIOD (default: 1)\nticker_period = 3\n"),
        "{shown}"
    );
    assert!(shown.contains(&format!(
        "# from {}:3 (default: 30)\nstats_period = 5\n",
        path.display()
    )));
    assert!(shown.contains("# default\ncheck_period = 60\n"), "{shown}");
    assert!(
        shown.contains("# from PGQD_LOGFILE (default: empty)\nlogfile = \n"),
        "{shown}"
    );
}

/// Environment values go through the same validation; the error starts with the
/// variable's name.
#[test]
fn errors_name_the_variable() {
    let message = env_error(vars(&[("PGQD_TICKER_PERIOD", "1s")]));
    assert!(
        message.starts_with(
            "PGQD_TICKER_PERIOD: invalid value \"1s\" for parameter ticker_period: expected seconds"
        ),
        "{message}"
    );
    let message = env_error(vars(&[("PGQD_DATABASE_LIST", "a,,b")]));
    assert!(message.starts_with("PGQD_DATABASE_LIST: "), "{message}");
    let message = env_error(vars(&[(
        "PGQD_BASE_CONNSTR",
        "host=/x nosuchkey=1 password=Hidden1",
    )]));
    assert!(
        message.starts_with("PGQD_BASE_CONNSTR: invalid value"),
        "{message}"
    );
    assert!(!message.contains("Hidden1"), "{message}");
    let bad = OsString::from(std::ffi::OsStr::new(not_utf8()));
    let message = env_error(vec![("PGQD_SYSLOG_IDENT".into(), bad)]);
    assert_eq!(message, "PGQD_SYSLOG_IDENT: value is not valid UTF-8");
}

/// Bytes that are not UTF-8.
fn not_utf8() -> &'static std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b"a\xffb")
}

/// An unknown PGQD_* variable is ignored with a warning naming the closest key;
/// other variables are not looked at.
#[test]
fn unknown_variables_warn() {
    let env = vars(&[
        ("PGQD_TICKER_PERIO", "3"),
        ("PGQD_ticker_period", "3"),
        ("PGQD_BASE_CONSTR", "x"),
        ("PGHOST", "/tmp"),
        ("PGQDX", "1"),
    ]);
    let loaded = with_env("[pgqd]\n", env).unwrap();
    assert_eq!(loaded.config, Config::default());
    let messages: Vec<&str> = loaded.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].contains(
            "PGQD_BASE_CONSTR is not a pgqd setting and is ignored; did you mean PGQD_BASE_CONNSTR?"
        ),
        "{messages:?}"
    );
    assert!(messages[1].contains(
        "PGQD_TICKER_PERIO is not a pgqd setting and is ignored; did you mean PGQD_TICKER_PERIOD?"
    ));
    assert!(messages[2].contains("did you mean PGQD_TICKER_PERIOD?"));
    assert_eq!(
        loaded.warnings[1].origin,
        Origin::Env("PGQD_TICKER_PERIO".into())
    );
}

/// PGQD_BASE_CONNSTR_FILE reads base_connstr from a file, one trailing newline dropped.
#[test]
fn connstr_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let read = |content: &str| {
        std::fs::write(&secret, content).unwrap();
        let env = vec![("PGQD_BASE_CONNSTR_FILE".into(), secret.clone().into())];
        with_env("[pgqd]\nbase_connstr = host=/file\n", env)
    };
    let loaded = read("host=/tmp password=S3cret\n").unwrap();
    assert_eq!(
        loaded.config.base_connstr.expose(),
        "host=/tmp password=S3cret"
    );
    assert_eq!(
        loaded.origins.of("base_connstr"),
        &Origin::Env("PGQD_BASE_CONNSTR_FILE".into())
    );
    assert_eq!(
        read("host=/a\r\n").unwrap().config.base_connstr.expose(),
        "host=/a"
    );
    assert_eq!(
        read("host=/a\n\n").unwrap().config.base_connstr.expose(),
        "host=/a\n"
    );
    assert_eq!(
        read("host=/a").unwrap().config.base_connstr.expose(),
        "host=/a"
    );
    let message = read("host=/a typo=1 password=S3cret\n")
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("PGQD_BASE_CONNSTR_FILE: invalid value"),
        "{message}"
    );
    assert!(!message.contains("S3cret"), "{message}");
}

/// A missing or unusable secret file is an error naming the variable and the file,
/// never its content; setting both forms is an error.
#[test]
fn connstr_file_errors() {
    let missing = env_error(vars(&[("PGQD_BASE_CONNSTR_FILE", "/nonexistent/secret")]));
    assert_eq!(
        missing,
        "PGQD_BASE_CONNSTR_FILE: could not load file \"/nonexistent/secret\": No such file or directory"
    );
    let device = env_error(vars(&[("PGQD_BASE_CONNSTR_FILE", "/dev/zero")]));
    assert!(
        device.ends_with("\"/dev/zero\": not a regular file"),
        "{device}"
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"password=S3cret\xff\n").unwrap();
    let path = secret.to_str().unwrap();
    let message = env_error(vars(&[("PGQD_BASE_CONNSTR_FILE", path)]));
    assert_eq!(
        message,
        format!("PGQD_BASE_CONNSTR_FILE: could not load file \"{path}\": not valid UTF-8")
    );
    std::fs::write(&secret, "host=/tmp\n").unwrap();
    let both = env_error(vars(&[
        ("PGQD_BASE_CONNSTR_FILE", path),
        ("PGQD_BASE_CONNSTR", "host=/x"),
    ]));
    assert_eq!(
        both,
        "PGQD_BASE_CONNSTR_FILE: cannot be used together with PGQD_BASE_CONNSTR"
    );
}

/// The environment applies to TOML files too.
#[test]
fn toml_with_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(&path, "[pgqd]\nticker_period = 2\n").unwrap();
    let loaded = load_with_env(&path, vars(&[("PGQD_TICKER_PERIOD", "0.25")])).unwrap();
    assert_eq!(loaded.config.ticker_period, Duration::from_millis(250));
}

/// An obsolete key (`round_connections`) still loads, from the file or a variable,
/// with one warning each naming its origin and saying why it is gone.
#[test]
fn obsolete_key_warns_and_loads() {
    let env = vec![("PGQD_ROUND_CONNECTIONS".into(), "1".into())];
    let loaded = with_env("[pgqd]\nround_connections = 1\n", env).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(
        matches!(loaded.warnings[0].origin, Origin::File { line: 2, .. }),
        "{:?}",
        loaded.warnings
    );
    assert!(
        loaded.warnings[1]
            .message
            .starts_with("round_connections is obsolete and has no effect: "),
        "{:?}",
        loaded.warnings
    );
}
