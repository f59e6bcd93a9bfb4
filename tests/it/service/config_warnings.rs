//! Warnings found while reading the config reach the log file, at start and on reload,
//! also when the console is silenced (`-q`) or gone (`-d`).

use std::fs;
use std::path::Path;

use nix::sys::signal::Signal;

use crate::harness::{Cluster, Daemon, pgqd};

const WARNING: &str = "WARNING value of database_list contains an inline comment";

fn ini_body(cluster: &Cluster, log: &Path, comment: &str) -> String {
    format!(
        "base_connstr = {}\ndatabase_list = postgres  # {comment}\nlogfile = {}",
        cluster.connstr(),
        log.display()
    )
}

/// Stops the daemon of `ini` with `-s` on drop, so a failing test leaves none behind.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = pgqd().arg("-s").arg(self.0).output();
    }
}

fn count_in(path: &Path, needle: &str) -> usize {
    fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// Waits until `count_in(log, needle)` is `count`; on timeout, shows the log.
fn wait_for_count(log: &Path, needle: &str, count: usize) {
    let reached = crate::harness::poll(crate::harness::DEADLINE, || count_in(log, needle) == count);
    let text = fs::read_to_string(log).unwrap_or_default();
    assert!(
        reached,
        "timed out waiting for {count} x {needle:?} in the log:\n{text}"
    );
}

/// With `-q`, the inline-comment warning is in the log file at start, and a reload of a
/// changed file logs the new warning there too.
#[test]
fn config_warnings_reach_the_logfile_with_quiet() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pgqd.log");
    let daemon = Daemon::start_args(&ini_body(cluster, &log, "first db"), &["-q"]);
    wait_for_count(&log, WARNING, 1);
    assert!(count_in(&log, "first db") >= 1);
    fs::write(
        daemon.config_path(),
        crate::harness::ini(&ini_body(cluster, &log, "second db")),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    wait_for_count(&log, WARNING, 2);
    assert_eq!(count_in(&log, "did you mean \"postgres\"?"), 2);
    assert!(count_in(&log, "second db") >= 1);
    assert_eq!(daemon.output(), "", "-q keeps the console silent");
}

/// With `-d`, the warning is in the daemon's log file, at start and after `-r`.
#[test]
fn config_warnings_reach_the_logfile_of_a_daemon() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let (log, pidfile) = (dir.path().join("d.log"), dir.path().join("d.pid"));
    let ini = dir.path().join("d.ini");
    let write = |comment: &str| {
        let body = ini_body(cluster, &log, comment);
        let text = crate::harness::ini(&format!("pidfile = {}\n{body}", pidfile.display()));
        fs::write(&ini, text).unwrap();
    };
    write("first db");
    let start = pgqd().arg("-d").arg(&ini).output().unwrap();
    assert_eq!(start.status.code(), Some(0), "{start:?}");
    let _stop = StopOnDrop(&ini);
    wait_for_count(&log, WARNING, 1);
    write("second db");
    let reload = pgqd().arg("-r").arg(&ini).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&reload.stderr), "SIGHUP sent\n");
    wait_for_count(&log, WARNING, 2);
    assert!(count_in(&log, "second db") >= 1);
}
