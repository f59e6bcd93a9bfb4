//! pgqd's command line as a user sees it: output streams, messages, exit codes.

use std::process::Output;

use crate::harness::pgqd;

fn run(args: &[&str]) -> Output {
    pgqd()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `-V` prints `pgqd version X` with this crate's version.
#[test]
fn version() {
    let out = run(&["-V"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("pgqd version {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `--ini` prints the sample config, which is config/pgqd.ini.
#[test]
fn ini_sample() {
    let out = run(&["--ini"]);
    assert_eq!(out.status.code(), Some(0));
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/pgqd.ini")).unwrap();
    assert_eq!(text(&out.stdout), sample);
    assert!(sample.starts_with("[pgqd]"));
}

/// `-h` prints the usage on stdout and exits 0.
#[test]
fn help() {
    let out = run(&["-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("usage: pgqd [switches] config.file\n"));
}

/// A bad switch prints `bad switch: ` and the usage on stdout, exit 1.
#[test]
fn bad_switch() {
    let out = run(&["-x", "config/pgqd.ini"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("bad switch: usage: pgqd"),
        "{}",
        text(&out.stdout)
    );
}

/// No config path, or two: `pgqd requires config file` on stderr, exit 1.
#[test]
fn requires_config_file() {
    for args in [&[][..], &["-v"][..], &["a.ini", "b.ini"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stderr), "pgqd requires config file\n");
    }
}

/// `--check` on the samples prints the effective settings and exits 0.
#[test]
fn check_samples() {
    for sample in ["config/pgqd.ini", "config/pgqd.toml"] {
        let out = run(&["--check", sample]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("logfile = /var/log/postgresql/pgqd.log\n"),
            "{stdout}"
        );
        assert!(stdout.contains("ticker_period = 1\n"), "{stdout}");
    }
}

/// `--check` on a bad file names file, line and key, exit 1; a password never shows.
#[test]
fn check_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ini");
    std::fs::write(
        &bad,
        "[pgqd]\nbase_connstr = password=hunter2\nticker_period = 1s\n",
    )
    .unwrap();
    let out = run(&["--check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "invalid value \"1s\" for parameter ticker_period in configuration ({}:3)",
            bad.display()
        )),
        "{stderr}"
    );
    std::fs::write(&bad, "[pgqd]\nbase_connstr = password=hunter2\n").unwrap();
    let out = run(&["--check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("hunter2"));
    let missing = run(&["--check", "/nonexistent.ini"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr)
            .contains("could not load file \"/nonexistent.ini\": No such file or directory")
    );
}

/// `-s`, `-k`, `-r` without a pidfile in the config: `No pidfile configured`, exit 1.
#[test]
fn signal_needs_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("p.ini");
    std::fs::write(&ini, "[pgqd]\n").unwrap();
    for switch in ["-s", "-k", "-r"] {
        let out = run(&[switch, ini.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stderr), "No pidfile configured\n");
    }
}
