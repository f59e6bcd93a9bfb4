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

/// `pgqd` with `args` and the extra environment `env`, run from the crate root.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    pgqd()
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// `--check` says where each value came from: file and line, a PGQD_* variable (which
/// wins over the file), or the default; an unknown PGQD_* variable is warned about.
#[test]
fn check_shows_origins() {
    let env = [
        ("PGQD_TICKER_PERIOD", "0.5"),
        ("PGQD_PIDFILE", ""),
        ("PGQD_TICKER_PERIO", "2"),
    ];
    let out = run_env(&["--check", "config/pgqd.ini"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for shown in [
        "# from PGQD_TICKER_PERIOD (default: 1)\nticker_period = 0.5\n",
        "# from config/pgqd.ini:8 (default: empty)\nlogfile = /var/log/postgresql/pgqd.log\n",
        "# from PGQD_PIDFILE (default: empty)\npidfile = \n",
        "# default\nstats_period = 30\n",
    ] {
        assert!(stdout.contains(shown), "{stdout}");
    }
    assert!(
        text(&out.stderr).contains("PGQD_TICKER_PERIO is not a pgqd setting and is ignored; did you mean PGQD_TICKER_PERIOD?"),
        "{}",
        text(&out.stderr)
    );
}

/// base_connstr from PGQD_BASE_CONNSTR_FILE: `--check` shows it masked, and an error
/// in it names the variable without showing the password.
#[test]
fn check_connstr_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "host=/tmp password=hunter2\n").unwrap();
    let file = secret.to_str().unwrap();
    let env = [("PGQD_BASE_CONNSTR_FILE", file)];
    let out = run_env(&["--check", "config/pgqd.toml"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "# from PGQD_BASE_CONNSTR_FILE (default: empty)\nbase_connstr = host=/tmp password=********\n"
        ),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(&secret, "host=/tmp nosuchkey=1 password=hunter2\n").unwrap();
    let out = run_env(&["--check", "config/pgqd.toml"], &env);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "ERROR PGQD_BASE_CONNSTR_FILE: invalid value for parameter base_connstr: "
        ),
        "{stderr}"
    );
    for output in [text(&out.stdout), stderr] {
        assert!(!output.contains("hunter2"), "{output}");
    }
}

/// A bad PGQD_* value fails `--check` naming the variable; without a config file the
/// daemon still asks for one, whatever PGQD_* says.
#[test]
fn check_env_errors() {
    let out = run_env(
        &["--check", "config/pgqd.ini"],
        &[("PGQD_TICKER_PERIOD", "1s")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(
            "ERROR PGQD_TICKER_PERIOD: invalid value \"1s\" for parameter ticker_period: "
        ),
        "{}",
        text(&out.stderr)
    );
    let out = run_env(&[], &[("PGQD_BASE_CONNSTR", "host=/tmp")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "pgqd requires config file\n");
}

/// `--check` refuses what start-up would: a logfile that is a directory, a pidfile
/// whose directory is missing; the error names key, path and line.
#[test]
fn check_log_and_pid_paths() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("p.ini");
    let d = dir.path().display();
    std::fs::write(&ini, format!("[pgqd]\nlogfile = {d}\n")).unwrap();
    let out = run(&["--check", ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "ERROR invalid value \"{d}\" for parameter logfile in configuration ({d}/p.ini:2): is a directory\n"
        )
    );
    std::fs::write(&ini, format!("[pgqd]\npidfile = {d}/none/p.pid\n")).unwrap();
    let out = run(&["--check", ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "parameter pidfile in configuration ({d}/p.ini:2): directory \"{d}/none\" does not exist"
        )),
        "{}",
        text(&out.stderr)
    );
}

/// `%include /dev/zero` is refused (before reading: the process does not grow),
/// naming the file and the include line.
#[test]
fn check_refuses_devices() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("z.ini");
    std::fs::write(&ini, "[pgqd]\n%include /dev/zero\n").unwrap();
    let out = run(&["--check", ini.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "ERROR error processing include file in configuration ({}:2): could not load file \"/dev/zero\": not a regular file\n",
            ini.display()
        )
    );
}
