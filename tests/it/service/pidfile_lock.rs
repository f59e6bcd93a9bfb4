//! The pidfile lock: a running daemon is found through its locked pidfile, whatever
//! its binary is called.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use super::write_ini;
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

/// `program ini` in the background, its output discarded; killed on drop.
fn spawn_quiet(program: &Path, ini: &Path) -> KillOnDrop {
    KillOnDrop(
        Command::new(program)
            .arg(ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `holder` runs with `ini`'s pidfile: once its pid is in the file, a start of this
/// pgqd fails with exit 1 and pgqd's message plus `named`, the pidfile keeps the
/// holder's pid, and `-s` stops the holder. Returns the holder's exit status.
fn start_refused_then_holder_stopped(
    ini: &Path,
    pidfile: &Path,
    holder: &mut KillOnDrop,
    named: &str,
) -> ExitStatus {
    let pid = holder.0.id().to_string();
    let holds = || fs::read_to_string(pidfile).is_ok_and(|t| t.trim() == pid);
    wait_until("the holder's pid in the pidfile", holds);
    let (code, stderr) = run_within_deadline(pgqd().arg(ini));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("pidfile exists, another instance running?") && stderr.contains(named),
        "{stderr}"
    );
    assert!(holds(), "the pidfile is left alone");
    let (_, stop) = run_within_deadline(pgqd().arg("-s").arg(ini));
    assert_eq!(stop, "SIGINT sent\n");
    wait_until("the holder exits", || {
        holder.0.try_wait().unwrap().is_some()
    });
    holder.0.wait().unwrap()
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
    let ini = write_ini(
        dir.path(),
        &format!(
            "base_connstr = {}\ndatabase_list = {db}\nlogfile = {}\npidfile = {}",
            cluster.connstr(),
            log.display(),
            pidfile.display()
        ),
    );
    let mut renamed = spawn_quiet(&copy_binary(dir.path(), "ticker-x"), &ini);
    wait_until("pgq version ok", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("pgq version ok"))
    });
    let pid = renamed.0.id();
    let message = format!("\"{}\" is locked by pid {pid}", pidfile.display());
    let status = start_refused_then_holder_stopped(&ini, &pidfile, &mut renamed, &message);
    assert_eq!(status.code(), Some(0));
    assert!(!pidfile.exists(), "pidfile removed at exit");
}

/// An unlocked pidfile is stale even when its pid is a live process: `-s` signals
/// nothing and a start takes the file over (its own pid written in it), the process
/// named in it left alone all along.
#[test]
fn unlocked_pidfile_is_stale_whatever_its_pid() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("p.pid");
    // A live process that is no daemon: it must not be signalled.
    let mut bystander = KillOnDrop(Command::new("sleep").arg("600").spawn().unwrap());
    fs::write(&pidfile, format!("{}\n", bystander.0.id())).unwrap();
    let ini = write_ini(
        dir.path(),
        &format!(
            "base_connstr = {}\ndatabase_list = postgres\npidfile = {}",
            cluster.connstr(),
            pidfile.display()
        ),
    );
    let (_, stop) = run_within_deadline(pgqd().arg("-s").arg(&ini));
    assert_eq!(stop, "Old process is not running\n");
    let mut daemon = spawn_quiet(Path::new(env!("CARGO_BIN_EXE_pgqd")), &ini);
    let pid = daemon.0.id().to_string();
    wait_until("the started daemon's pid in the stale pidfile", || {
        let exited = daemon.0.try_wait().unwrap();
        assert!(exited.is_none(), "the daemon exited: {exited:?}");
        fs::read_to_string(&pidfile).is_ok_and(|t| t.trim() == pid)
    });
    // A signal takes a moment to end its target: watch the bystander for a while.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(500) {
        let ended = bystander.0.try_wait().unwrap();
        assert!(ended.is_none(), "bystander signalled: {ended:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
    let ini = write_ini(
        dir.path(),
        &format!(
            "base_connstr = {}\ndatabase_list = {db}\npidfile = {}",
            cluster.connstr(),
            pidfile.display()
        ),
    );
    let mut old = spawn_quiet(&reference_pgqd(), &ini);
    let message = format!("names pid {}", old.0.id());
    start_refused_then_holder_stopped(&ini, &pidfile, &mut old, &message);
    assert!(!pidfile.exists(), "pgqd 3.5 removed its pidfile");
}
