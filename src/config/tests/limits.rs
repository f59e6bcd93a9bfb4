//! Limits and validation edges (the fault matrix's findings): bounded files, the
//! 1 ms floor, messages naming only formats that parse, empty list items, control
//! characters, and the log and pid paths `--check` checks.

use std::path::{Path, PathBuf};

use super::super::*;

/// Writes `text` as `name` in a fresh directory and loads it without PGQD_* variables.
fn load_text(dir: &Path, name: &str, text: &str) -> Result<Loaded, ConfigError> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    load_with_env(&path, [])
}

fn error(name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    load_text(dir.path(), name, text).unwrap_err().to_string()
}

/// A config file over 1 MiB is refused, naming the file and the `%include` line; so
/// is a main file over the limit.
#[test]
fn files_over_one_mib() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.ini");
    std::fs::write(&big, format!("[pgqd]\n{}", "#".repeat(1 << 20))).unwrap();
    let message = load_text(
        dir.path(),
        "m.ini",
        &format!("[pgqd]\n%include {}\n", big.display()),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("m.ini:2)"), "{message}");
    assert!(
        message.contains(&format!("\"{}\": larger than 1048576 bytes", big.display())),
        "{message}"
    );
    let message = load_with_env(&big, []).unwrap_err().to_string();
    assert!(message.contains("larger than"), "{message}");
    let toml = dir.path().join("big.toml");
    std::fs::write(&toml, "#".repeat((1 << 20) + 1)).unwrap();
    assert!(
        load_with_env(&toml, [])
            .unwrap_err()
            .to_string()
            .contains("larger than")
    );
}

/// A file of exactly 1 MiB is still read.
#[test]
fn file_of_one_mib() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[pgqd]\nstats_period = 7\n#";
    let text = format!("{head}{}", "x".repeat((1 << 20) - head.len()));
    let config = load_text(dir.path(), "m.ini", &text).unwrap().config;
    assert_eq!(config.stats_period, std::time::Duration::from_secs(7));
}

/// `%include` of a device, a directory or a FIFO is refused before reading (no
/// memory grows, nothing blocks), naming the file and the include line.
#[test]
fn only_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let targets = [PathBuf::from("/dev/zero"), dir.path().to_path_buf(), fifo];
    for target in targets {
        let text = format!("[pgqd]\n\n%include {}\n", target.display());
        let message = error("m.ini", &text);
        assert!(message.contains("m.ini:3)"), "{message}");
        assert!(
            message.contains(&format!("\"{}\": not a regular file", target.display())),
            "{message}"
        );
    }
    let message = load_with_env(Path::new("/dev/zero"), [])
        .unwrap_err()
        .to_string();
    assert!(message.contains("not a regular file"), "{message}");
}

/// The periods and timeouts, every one of them.
fn time_keys() -> Vec<String> {
    known_keys()
        .into_iter()
        .filter(|k| k.ends_with("_period") || k.ends_with("_timeout") || k.ends_with("_lifetime"))
        .collect()
}

/// A period or timeout below 1 ms is refused with the key named (it used to become
/// 1 ms silently); 1 ms itself is accepted.
#[test]
fn below_one_millisecond() {
    assert_eq!(time_keys().len(), 11);
    for key in time_keys() {
        for value in ["0.0000001", "0.0009"] {
            let message = error("m.ini", &format!("[pgqd]\n{key} = {value}\n"));
            assert!(
                message.contains(&format!("for parameter {key} in")),
                "{message}"
            );
            assert!(message.contains("at least 0.001 seconds"), "{message}");
        }
        let message = error("m.toml", &format!("[pgqd]\n{key} = 1e-7\n"));
        assert!(
            message.contains(&format!("for parameter {key} in")),
            "{message}"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(load_text(dir.path(), "m.ini", &format!("[pgqd]\n{key} = 0.001\n")).is_ok());
    }
}

/// The upper bound is stated in a form the key accepts, and that form is accepted.
#[test]
fn upper_bound_message_parses() {
    for text in [
        "[pgqd]\nticker_period = 1e10\n",
        "[pgqd]\nticker_period = 10000000000\n",
    ] {
        let message = error("m.toml", text);
        assert!(message.contains("at most 1000000000 seconds"), "{message}");
    }
    let message = error("m.ini", "[pgqd]\nticker_period = 10000000000\n");
    assert!(message.contains("at most 1000000000 seconds"), "{message}");
    let dir = tempfile::tempdir().unwrap();
    assert!(load_text(dir.path(), "m.ini", "[pgqd]\nticker_period = 1000000000\n").is_ok());
}

/// An empty name between commas is refused (`,,,` used to mean every database).
#[test]
fn empty_database_list_items() {
    for value in [",,,", "a,,b", "a,", ",a", " , "] {
        let message = error("m.ini", &format!("[pgqd]\ndatabase_list = {value}\n"));
        assert!(
            message.contains("parameter database_list in configuration (")
                && message.contains("cannot be empty"),
            "{value}: {message}"
        );
    }
    assert!(error("m.toml", "[pgqd]\ndatabase_list = [\"a\", \"\"]\n").contains("cannot be empty"));
    let dir = tempfile::tempdir().unwrap();
    let config = load_text(dir.path(), "m.ini", "[pgqd]\ndatabase_list =  \n")
        .unwrap()
        .config;
    assert!(config.database_list.is_empty());
}

/// Control characters in echoed paths, keys and values are escaped.
#[test]
fn control_characters_escaped() {
    let cases = [
        (
            "[pgqd]\n%include /nonexistent/a\rb\x01c\x7fd\n",
            "/nonexistent/a\\rb\\x01c\\x7fd",
        ),
        ("[pgqd]\n'a\x1b[2Jb' = 1\n", "pgqd/a\\x1b[2Jb"),
        ("[pgqd]\nsyslog_facility = lo\tcal\r0\n", "\"lo\\tcal\\r0\""),
        ("[pgqd]\nlogfile = ~no\x08user/x\n", "~no\\x08user/x"),
        ("[a\x0bb]\n", "a\\x0bb"),
    ];
    for (text, shown) in cases {
        let message = error("m.ini", text);
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.contains(shown), "{message:?} lacks {shown:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a\rb");
    std::fs::create_dir(&odd).unwrap();
    let message = load_with_env(&odd.join("x.ini"), [])
        .unwrap_err()
        .to_string();
    assert!(message.contains("a\\rb"), "{message:?}");
}

/// `--check` refuses what start-up would: a logfile or pidfile that is a directory, or
/// whose directory is missing; the error names key, path and line.
#[test]
fn log_and_pid_paths() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let loaded = load_text(dir.path(), "m.ini", text).unwrap();
        check_paths(&loaded.config, &loaded.origins).map_err(|e| e.to_string())
    };
    let d = dir.path().display();
    let message = check(&format!("[pgqd]\nlogfile = {d}\n")).unwrap_err();
    assert_eq!(
        message,
        format!(
            "invalid value \"{d}\" for parameter logfile in configuration ({d}/m.ini:2): is a directory"
        )
    );
    let message = check(&format!("[pgqd]\n\npidfile = {d}/no/p.pid\n")).unwrap_err();
    assert!(
        message.contains("parameter pidfile in configuration"),
        "{message}"
    );
    assert!(
        message.contains(&format!("m.ini:3): directory \"{d}/no\" does not exist")),
        "{message}"
    );
    let message = check(&format!("[pgqd]\nlogfile = {d}/m.ini/x.log\n")).unwrap_err();
    assert!(message.contains("does not exist"), "{message}");
    assert_eq!(
        check(&format!(
            "[pgqd]\nlogfile = {d}/l.log\npidfile = {d}/p.pid\n"
        )),
        Ok(())
    );
    assert_eq!(check("[pgqd]\n"), Ok(()));
}
