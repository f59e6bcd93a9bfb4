//! The config rules, each from text to typed value or to the exact error.

use std::path::Path;
use std::time::Duration;

use super::*;

fn typed(entries: &[Entry]) -> Result<Config, ConfigError> {
    keys::typed(entries).map(|(config, _)| config)
}

fn ini(text: &str) -> Result<Config, ConfigError> {
    typed(&ini::parse(text, Path::new("t.ini"))?)
}

fn ini_error(text: &str) -> String {
    ini(text).unwrap_err().to_string()
}

fn toml_text(text: &str) -> Result<Config, ConfigError> {
    typed(&toml::entries(text, Path::new("t.toml"))?)
}

fn toml_error(text: &str) -> String {
    toml_text(text).unwrap_err().to_string()
}

/// An empty `[pgqd]` gives pgqd 3.5's defaults.
#[test]
fn defaults() {
    let c = ini("[pgqd]\n").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.initial_database, "template1");
    assert_eq!(c.ticker_period, Duration::from_secs(1));
    assert_eq!(c.check_period, Duration::from_secs(60));
    assert_eq!(c.maint_period, Duration::from_secs(120));
    assert_eq!(c.retry_period, Duration::from_secs(30));
    assert_eq!(c.stats_period, Duration::from_secs(30));
    assert_eq!(c.connection_lifetime, Duration::from_secs(3600));
    assert_eq!(
        (
            c.syslog,
            c.syslog_ident.as_str(),
            c.syslog_facility.as_str()
        ),
        (1, "pgqd", "daemon")
    );
    assert_eq!((c.logfile, c.pidfile), (None, None));
}

/// Every key set in ini and in TOML gives the same typed config.
#[test]
fn every_key_in_both_formats() {
    let from_ini = ini("[pgqd]
logfile = /tmp/l.log
pidfile = /tmp/p.pid
base_connstr = host=/tmp port=5433
initial_database = postgres
database_list = a, b ,c
syslog = 0
syslog_ident = tick
syslog_facility = local3
check_period = 5
maint_period = 7.5
retry_period = 3
ticker_period = 0.1
stats_period = 10
connection_lifetime = 600
ticker_timeout = 4
retry_timeout = 20
maint_timeout = 300
connect_timeout = 2
log_format = json
http_listen = 127.0.0.1:10187
queue_stats_period = 15
leader_lock = 0
foreign_ticker = yield
")
    .unwrap();
    let from_toml = toml_text(
        r#"[pgqd]
logfile = "/tmp/l.log"
pidfile = "/tmp/p.pid"
base_connstr = "host=/tmp port=5433"
initial_database = "postgres"
database_list = ["a", "b", "c"]
syslog = 0
syslog_ident = "tick"
syslog_facility = "local3"
check_period = 5
maint_period = 7.5
retry_period = 3
ticker_period = 0.1
stats_period = 10
connection_lifetime = 600
ticker_timeout = 4
retry_timeout = 20
maint_timeout = 300
connect_timeout = 2
log_format = "json"
http_listen = "127.0.0.1:10187"
queue_stats_period = 15
leader_lock = 0
foreign_ticker = "yield"
"#,
    )
    .unwrap();
    assert_eq!(from_ini, from_toml);
    assert_eq!(from_ini.database_list, ["a", "b", "c"]);
    assert_eq!(from_ini.ticker_period, Duration::from_millis(100));
    assert_eq!(from_ini.maint_period, Duration::from_millis(7500));
    assert_eq!(from_ini.http_listen, "127.0.0.1:10187");
    assert_eq!(from_ini.queue_stats_period, Duration::from_secs(15));
    assert_eq!(from_ini.base_connstr.expose(), "host=/tmp port=5433");
    assert_eq!(from_ini.log_format, LogFormat::Json);
    assert_eq!(from_ini.foreign_ticker, crate::config::ForeignTicker::Yield);
    assert_eq!(from_ini.logfile.as_deref(), Some(Path::new("/tmp/l.log")));
}

/// Every default in the table types by its key's own rule (none falls back to the
/// type's zero), and together they are `Config::default()`.
#[test]
fn defaults_are_valid() {
    let entries: Vec<Entry> = keys::KEYS
        .iter()
        .map(|key| Entry {
            key: key.name.into(),
            value: Raw::Text(key.default.into()),
            origin: Origin::Default,
        })
        .collect();
    assert_eq!(typed(&entries).unwrap(), Config::default());
    assert_ne!(Config::default().ticker_period, Duration::ZERO);
}

/// Every key of the struct is tested above: a new key must be added to that test.
#[test]
fn key_list_is_complete() {
    assert_eq!(known_keys().len(), 25, "{:?}", known_keys());
}

/// An unknown key is an error naming key, file and line.
#[test]
fn unknown_key() {
    assert_eq!(
        ini_error("[pgqd]\n\nfoo = 1\n"),
        "unknown parameter: pgqd/foo in configuration (t.ini:3)"
    );
    assert_eq!(
        toml_error("[pgqd]\nfoo = 1\n"),
        "unknown parameter: pgqd/foo in configuration (t.toml:2)"
    );
    // Keys are case-sensitive, as in pgqd 3.5.
    assert!(
        ini_error("[pgqd]\nTicker_Period = 2\n")
            .contains("unknown parameter: pgqd/Ticker_Period in configuration (t.ini:2); did you mean ticker_period?")
    );
}

/// Per-queue settings put in pgqd.ini get a hint naming pgq.set_queue_config().
#[test]
fn per_queue_hint() {
    for key in [
        "ticker_max_count",
        "ticker_max_lag",
        "ticker_idle_period",
        "queue_ticker_max_lag",
    ] {
        let message = ini_error(&format!("[pgqd]\n{key} = 500\n"));
        assert!(message.contains("pgq.set_queue_config("), "{message}");
        assert!(message.contains("(t.ini:2)"), "{message}");
    }
    assert!(toml_error("[pgqd]\nticker_max_lag = 3\n").contains("per-queue setting"));
}

/// A later line overrides an earlier one, but every line is validated.
#[test]
fn later_lines_win() {
    assert_eq!(
        ini("[pgqd]\nstats_period = 2\nstats_period = 3\n")
            .unwrap()
            .stats_period,
        Duration::from_secs(3)
    );
    assert!(ini_error("[pgqd]\nstats_period = 2\nstats_period = x\n").contains("(t.ini:3)"));
}

/// `database_list = db1  # comment` keeps the whole value (as pgqd) and warns with
/// the likely intended value.
#[test]
fn inline_comment_warning() {
    let entries = ini::parse(
        "[pgqd]\ndatabase_list = DbExample  # comment\nlogfile = a#b\n",
        Path::new("t.ini"),
    )
    .unwrap();
    let config = typed(&entries).unwrap();
    assert_eq!(config.database_list, ["DbExample  # comment"]);
    let warnings = inline_comment_warnings(&entries);
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        warnings[0].origin,
        Origin::File {
            file: "t.ini".into(),
            line: 2
        }
    );
    assert!(
        warnings[0].message.contains("did you mean \"DbExample\"?"),
        "{}",
        warnings[0].message
    );
}

/// TOML: unknown tables and syntax errors name the file and line.
#[test]
fn toml_errors() {
    assert!(toml_error("[other]\nx = 1\n").contains("(t.toml:1)"));
    assert!(toml_error("[pgqd]\nticker_period = \n").contains("(t.toml:2)"));
    assert!(
        toml_error("[pgqd]\nsyslog_ident = 5\n")
            .contains("parameter syslog_ident in configuration (t.toml:2)")
    );
    assert_eq!(toml_text("").unwrap(), Config::default());
}

/// The shipped samples load, and name every key.
#[test]
fn samples_are_complete() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let ini_sample = std::fs::read_to_string(root.join("pgqd.ini")).unwrap();
    let toml_sample = std::fs::read_to_string(root.join("pgqd.toml")).unwrap();
    load(&root.join("pgqd.ini")).unwrap();
    load(&root.join("pgqd.toml")).unwrap();
    for key in known_keys() {
        assert!(
            ini_sample.contains(&format!("{key} =")),
            "pgqd.ini lacks {key}"
        );
        assert!(
            toml_sample.contains(&format!("{key} =")),
            "pgqd.toml lacks {key}"
        );
    }
}

/// `--check` output masks the password.
#[test]
fn effective_masks_password() {
    let c = ini("[pgqd]\nbase_connstr = host=h password=hunter2\n").unwrap();
    let out = c.effective();
    assert!(
        out.contains("base_connstr = host=h password=********"),
        "{out}"
    );
    assert!(!out.contains("hunter2"));
    assert!(out.contains("ticker_period = 1"));
}

mod from_env;
/// An error about base_connstr never quotes it: text that does not parse cannot be
/// masked reliably (`'password=` is an unknown key whose value is still a password);
/// nor does the inline-comment warning.
#[test]
fn connstr_never_quoted() {
    for text in [
        "'password=S3cretZz",
        "host=/x PASSWORD=S3cretZz",
        "password=S3cretZz nosuchkey=1",
    ] {
        let message = ini_error(&format!("[pgqd]\nbase_connstr = {text}\n"));
        assert!(
            message.starts_with(
                "invalid value for parameter base_connstr in configuration (t.ini:2): "
            ),
            "{message}"
        );
        assert!(!message.contains("S3cretZz"), "{message}");
    }
    let entries = ini::parse(
        "[pgqd]\nbase_connstr = host=/x password=S3cretZz # c\n",
        Path::new("t.ini"),
    )
    .unwrap();
    let warnings = inline_comment_warnings(&entries);
    assert_eq!(warnings.len(), 1);
    assert!(!warnings[0].message.contains("S3cretZz"), "{warnings:?}");
}

mod fuzz;
mod limits;
mod values;
