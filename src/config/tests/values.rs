//! How values are read: times, integers, lists, names from a fixed set, paths.

use std::time::Duration;

use super::*;

/// Times are non-negative decimal seconds; units, signs and zero are refused with
/// pgqd's message naming the value, key, file and line.
#[test]
fn time_values() {
    assert_eq!(
        ini("[pgqd]\nticker_period = .5\n").unwrap().ticker_period,
        Duration::from_millis(500)
    );
    assert_eq!(
        ini("[pgqd]\nticker_period = 2.\n").unwrap().ticker_period,
        Duration::from_secs(2)
    );
    let message = ini_error("[pgqd]\nticker_period = 1s\n");
    assert!(
        message.starts_with(
            "invalid value \"1s\" for parameter ticker_period in configuration (t.ini:2)"
        ),
        "{message}"
    );
    for bad in ["-1", "0", "0.0", "abc", "", "1e3", "nan", "1,5"] {
        let message = ini_error(&format!("[pgqd]\n\ncheck_period = {bad}\n"));
        assert!(
            message.contains("parameter check_period in configuration (t.ini:3)"),
            "{bad}: {message}"
        );
    }
    assert!(
        toml_error("[pgqd]\nticker_period = -1\n")
            .contains("ticker_period in configuration (t.toml:2)")
    );
    assert!(toml_error("[pgqd]\nstats_period = \"1s\"\n").contains("(t.toml:2)"));
    assert_eq!(
        toml_text("[pgqd]\nstats_period = \"2\"\n")
            .unwrap()
            .stats_period,
        Duration::from_secs(2)
    );
}

/// Absurdly long periods are refused rather than overflowing a timer.
#[test]
fn time_upper_bound() {
    assert!(ini_error("[pgqd]\nticker_period = 99999999999999999999\n").contains("at most"));
    assert!(toml_error("[pgqd]\nticker_period = 1e300\n").contains("at most"));
}

/// `syslog` is read like C's strtol with base 0, as pgqd does.
#[test]
fn integer_values() {
    let syslog = |v: &str| ini(&format!("[pgqd]\nsyslog = {v}\n")).map(|c| c.syslog);
    assert_eq!(syslog("0").unwrap(), 0);
    assert_eq!(syslog("0x10").unwrap(), 16);
    assert_eq!(syslog("010").unwrap(), 8);
    assert_eq!(syslog("-2").unwrap(), -2);
    assert!(
        ini_error("[pgqd]\nsyslog = yes\n").contains("invalid value \"yes\" for parameter syslog")
    );
    assert!(ini_error("[pgqd]\nsyslog = 1x\n").contains("(t.ini:2)"));
    assert_eq!(toml_text("[pgqd]\nsyslog = false\n").unwrap().syslog, 0);
}

/// `database_list` splits on commas only; blanks around items are trimmed; an empty
/// item between commas is refused (it was silently dropped before).
#[test]
fn database_list_split() {
    let list = |v: &str| {
        ini(&format!("[pgqd]\ndatabase_list = {v}\n"))
            .unwrap()
            .database_list
    };
    assert_eq!(list("a"), ["a"]);
    assert_eq!(list("a b, c\t,d"), ["a b", "c", "d"]);
    assert_eq!(list(""), Vec::<String>::new());
    assert!(ini_error("[pgqd]\ndatabase_list = a,,b,\n").contains("cannot be empty"));
    assert_eq!(
        toml_text("[pgqd]\ndatabase_list = \"x, y\"\n")
            .unwrap()
            .database_list,
        ["x", "y"]
    );
    assert_eq!(
        toml_text("[pgqd]\ndatabase_list = [\"a,b\"]\n")
            .unwrap()
            .database_list,
        ["a,b"]
    );
}

/// syslog_facility takes pgqd's names only.
#[test]
fn facility_names() {
    assert_eq!(
        ini("[pgqd]\nsyslog_facility = local7\n")
            .unwrap()
            .syslog_facility,
        "local7"
    );
    assert!(ini_error("[pgqd]\nsyslog_facility = kernel\n").contains("expected one of auth"));
}

/// log_format is text or json.
#[test]
fn log_format_values() {
    assert!(ini_error("[pgqd]\nlog_format = xml\n").contains("parameter log_format"));
}

/// File values get `~` and `~user` expansion; an empty value means not set.
#[test]
fn home_expansion() {
    let home = std::env::var("HOME").unwrap();
    let c = ini("[pgqd]\nlogfile = ~/x.log\npidfile = ~root/p.pid\n").unwrap();
    assert_eq!(c.logfile.unwrap(), Path::new(&home).join("x.log"));
    let root_home = nix::unistd::User::from_name("root").unwrap().unwrap().dir;
    assert_eq!(c.pidfile.unwrap(), root_home.join("p.pid"));
    assert!(ini_error("[pgqd]\nlogfile = ~no_such_user_x/a\n").contains("no such user"));
    assert_eq!(ini("[pgqd]\nlogfile =\n").unwrap().logfile, None);
}
