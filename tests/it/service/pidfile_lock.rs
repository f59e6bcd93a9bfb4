//! The pidfile lock: a running daemon is found through its locked pidfile, whatever
//! its binary is called.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{Cluster, DEADLINE, KillOnDrop, pgqd, reference_pgqd, wait_child, wait_until};

/// Runs `command` to completion, killing it if it outlives the deadline (a second
/// daemon that wrongly starts must not hang the test). Returns the exit code and stderr.
fn run_within_deadline(command: &mut Command) -> (Option<i32>, String) {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap()
    });
    (status.code(), fs::read_to_string(stderr.path()).unwrap())
}

/// A child process killed on drop, so a failing test leaves no daemon behind.
fn copy_binary(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::copy(env!("CARGO_BIN_EXE_pgqd"), &path).unwrap();
    path
}

/// A daemon running under another binary name still holds its pidfile: a second
/// start fails with exit 1 naming the pidfile and the holder's pid, and `-s` from
/// the normal binary stops the renamed one.
#[test]
fn renamed_binary_holds_the_pidfile() {
    let cluster = Cluster::shared();
    let db = cluster.create_pgq_db("lock");
    let dir = tempfile::tempdir().unwrap();
    let (pidfile, log) = (dir.path().join("t.pid"), dir.path().join("t.log"));
    let ini = dir.path().join("t.ini");
    fs::write(
        &ini,
        crate::harness::ini(&format!(
            "base_connstr = {}\ndatabase_list = {db}\nlogfile = {}\npidfile = {}",
            cluster.connstr(),
            log.display(),
            pidfile.display()
        )),
    )
    .unwrap();
    let mut renamed = KillOnDrop(
        Command::new(copy_binary(dir.path(), "ticker-x"))
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = renamed.0.id() as i32;
    wait_until("the renamed daemon's pid in the pidfile", || {
        fs::read_to_string(&pidfile).is_ok_and(|t| t.trim() == pid.to_string())
    });
    wait_until("pgq version ok", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("pgq version ok"))
    });

    let (code, stderr) = run_within_deadline(pgqd().arg(&ini));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("pidfile exists, another instance running?")
            && stderr.contains(&pidfile.display().to_string())
            && stderr.contains(&format!("pid {pid}")),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string(),
        "the pidfile is left alone"
    );

    let (_, stop) = run_within_deadline(pgqd().arg("-s").arg(&ini));
    assert_eq!(stop, "SIGINT sent\n");
    wait_until("the renamed daemon exits", || {
        renamed.0.try_wait().unwrap().is_some()
    });
    assert_eq!(renamed.0.wait().unwrap().code(), Some(0));
    assert!(!pidfile.exists(), "pidfile removed at exit");
}

/// An unlocked pidfile is stale even when its pid is a live process: `-s` signals
/// nothing and a start takes the file over.
#[test]
fn unlocked_pidfile_is_stale_whatever_its_pid() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("p.pid");
    // A live process that is no daemon: it must not be signalled.
    let mut bystander = KillOnDrop(Command::new("sleep").arg("600").spawn().unwrap());
    fs::write(&pidfile, format!("{}\n", bystander.0.id())).unwrap();
    let ini = dir.path().join("p.ini");
    fs::write(
        &ini,
        crate::harness::ini(&format!(
            "base_connstr = {}\ndatabase_list = postgres\npidfile = {}",
            cluster.connstr(),
            pidfile.display()
        )),
    )
    .unwrap();
    let (_, stop) = run_within_deadline(pgqd().arg("-s").arg(&ini));
    assert_eq!(stop, "Old process is not running\n");
    assert!(
        bystander.0.try_wait().unwrap().is_none(),
        "bystander signalled"
    );
}

/// pgqd 3.5 does not lock its pidfile: while it runs, a start on the same pidfile is
/// refused naming its pid (both would tick every database), and `-s` stops it, as
/// pgqd 3.5's own `-s` would.
#[test]
fn running_pgqd35_on_the_pidfile_is_found() {
    let cluster = Cluster::shared();
    let db = cluster.create_pgq_db("lock35");
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("old.pid");
    let ini = dir.path().join("old.ini");
    fs::write(
        &ini,
        crate::harness::ini(&format!(
            "base_connstr = {}\ndatabase_list = {db}\npidfile = {}",
            cluster.connstr(),
            pidfile.display()
        )),
    )
    .unwrap();
    let mut old = KillOnDrop(
        Command::new(reference_pgqd())
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = old.0.id() as i32;
    wait_until("pgqd 3.5's pid in the pidfile", || {
        fs::read_to_string(&pidfile).is_ok_and(|t| t.trim() == pid.to_string())
    });

    let (code, stderr) = run_within_deadline(pgqd().arg(&ini));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("pidfile exists, another instance running?")
            && stderr.contains(&format!("names pid {pid}")),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string(),
        "the pidfile is left alone"
    );

    let (_, stop) = run_within_deadline(pgqd().arg("-s").arg(&ini));
    assert_eq!(stop, "SIGINT sent\n");
    wait_until("pgqd 3.5 exits", || old.0.try_wait().unwrap().is_some());
    assert!(!pidfile.exists(), "pgqd 3.5 removed its pidfile");
}
