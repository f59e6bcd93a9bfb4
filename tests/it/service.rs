//! Running as a service: daemonizing, the pidfile, signals, log files and formats,
//! systemd notifications; each with the real binary as a child process.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{Cluster, Daemon, pgqd, wait_until};

mod config_warnings;
mod pidfile_lock;

fn write_ini(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("pgqd.ini");
    fs::write(&path, crate::harness::ini(body)).unwrap();
    path
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `-d` runs a daemon whose pid is in the pidfile and on its `Starting pgqd` line; `-r`
/// makes it reload, `-s` stops
/// it gracefully and removes the pidfile; a second start fails while it runs.
#[test]
fn daemon_pidfile_and_control_switches() {
    let cluster = Cluster::shared();
    let db = cluster.create_pgq_db("svc");
    let dir = tempfile::tempdir().unwrap();
    let (log, pidfile) = (dir.path().join("d.log"), dir.path().join("d.pid"));
    let ini = write_ini(
        dir.path(),
        &format!(
            "base_connstr = {}\ndatabase_list = {db}\nlogfile = {}\npidfile = {}",
            cluster.connstr(),
            log.display(),
            pidfile.display()
        ),
    );
    let start = pgqd().arg("-d").arg(&ini).output().unwrap();
    assert_eq!(
        start.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let pid = read_pid(&pidfile).expect("pidfile written before the parent exits");
    assert!(pid_alive(pid));
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    wait_until("pgq version ok", || {
        log_text().contains(&format!("[{db}]: pgq version ok"))
    });
    // The start line names the daemon, not the parent that exited.
    assert!(
        log_text().contains(&format!("[{pid}] LOG Starting pgqd ")),
        "{}",
        log_text()
    );

    let second = pgqd().arg("-d").arg(&ini).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("pidfile exists, another instance running?")
    );

    let reload = pgqd().arg("-r").arg(&ini).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&reload.stderr), "SIGHUP sent\n");
    wait_until("SIGHUP line", || {
        log_text().contains("LOG Got SIGHUP, re-reading config")
    });

    let stop = pgqd().arg("-s").arg(&ini).output().unwrap();
    assert_eq!(
        (
            stop.status.code(),
            String::from_utf8_lossy(&stop.stderr).as_ref()
        ),
        (Some(0), "SIGINT sent\n")
    );
    wait_until("daemon exit", || !pid_alive(pid));
    assert!(log_text().contains("LOG Got SIGINT, shutting down"));
    assert!(!pidfile.exists(), "pidfile removed at exit");

    let again = pgqd().arg("-s").arg(&ini).output().unwrap();
    assert_eq!(
        (
            again.status.code(),
            String::from_utf8_lossy(&again.stderr).as_ref()
        ),
        (Some(0), "Old process is not running\n")
    );
}

/// A stop sent the moment the pidfile names the daemon (`pgqd -s` right after a
/// start) stops it gracefully: exit 0, pidfile removed, every time. Before the stop
/// signals were held until the handlers were installed, 29 of 30 such stops killed the
/// process by SIGINT's default action and left the pidfile behind.
#[test]
fn stop_right_after_the_pidfile_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("p.pid");
    let ini = dir.path().join("p.ini");
    // No server needed: the daemon keeps trying to connect while it is stopped.
    fs::write(
        &ini,
        format!(
            "[pgqd]\nbase_connstr = host={} port=1\ndatabase_list = x\nsyslog = 0\npidfile = {}\n",
            dir.path().display(),
            pidfile.display()
        ),
    )
    .unwrap();
    for round in 0..10 {
        let mut child = pgqd()
            .arg(&ini)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Read without a pause: the window after the pidfile is written is short.
        let started = Instant::now();
        while read_pid(&pidfile) != Some(pid) {
            assert!(started.elapsed() < crate::harness::DEADLINE, "no pidfile");
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "round {round}: {status:?}");
        assert!(!pidfile.exists(), "round {round}: the pidfile is left");
    }
}

/// A pidfile naming a dead process is stale: logged, replaced, and the daemon runs.
#[test]
fn stale_pidfile_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("p.pid");
    fs::write(&pidfile, "999999999\n").unwrap();
    let cluster = Cluster::shared();
    let mut daemon = Daemon::start(&format!(
        "base_connstr = {}\ndatabase_list = postgres\npidfile = {}",
        cluster.connstr(),
        pidfile.display()
    ));
    daemon.wait_for_log("stale pidfile, removing");
    wait_until("own pid in pidfile", || {
        read_pid(&pidfile) == Some(daemon.child.id() as i32)
    });
    daemon.signal(Signal::SIGINT);
    assert_eq!(daemon.wait_exit(), Some(0));
    assert!(!pidfile.exists());
}

/// `-d` whose log file cannot be opened exits 1 and says why on the terminal.
#[test]
fn daemon_start_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("p.pid");
    let ini = write_ini(
        dir.path(),
        &format!(
            "logfile = /nonexistent/dir/pgqd.log\npidfile = {}",
            pidfile.display()
        ),
    );
    let out = pgqd().arg("-d").arg(&ini).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot open logfile \"/nonexistent/dir/pgqd.log\"")
    );
    assert!(!pidfile.exists());
}

/// `-d` needs a pidfile and some logging, with pgqd's messages.
#[test]
fn daemon_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(dir.path(), "logfile = /tmp/x.log");
    let out = pgqd().arg("-d").arg(&ini).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon needs pidfile configured"));
    let ini = write_ini(dir.path(), "pidfile = /tmp/x.pid");
    let out = pgqd().arg("-d").arg(&ini).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon needs logging configured"));
}

/// SIGTERM: `Got SIGTERM, fast exit` and exit status 0 (pgqd 3.5 exits 1).
#[test]
fn sigterm_exits_zero() {
    let cluster = Cluster::shared();
    let db = cluster.create_pgq_db("term");
    let mut daemon = Daemon::start(&format!(
        "base_connstr = {}\ndatabase_list = {db}",
        cluster.connstr()
    ));
    daemon.wait_for_log("pgq version ok");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
    assert!(daemon.output().contains("LOG Got SIGTERM, fast exit"));
}

/// SIGHUP with a broken config keeps the daemon running on the old one (its database
/// goes on ticking); a changed database_list then starts the new database and
/// unregisters the removed one (its ticking stops).
#[test]
fn reload_keeps_running_and_applies_database_list() {
    use crate::engine::{eager_queue, pgqd_backends};
    use crate::harness::tick_count;
    let cluster = Cluster::shared();
    let (one, two) = (cluster.create_pgq_db("hup"), cluster.create_pgq_db("hup"));
    eager_queue(cluster, &one, "q");
    eager_queue(cluster, &two, "q");
    let base = format!(
        "base_connstr = {}\nstats_period = 1\nticker_period = 0.2",
        cluster.connstr()
    );
    let daemon = Daemon::start(&format!("{base}\ndatabase_list = {one}"));
    daemon.wait_for_log(&format!("[{one}]: pgq version ok"));
    fs::write(daemon.config_path(), "[pgqd]\nticker_period = 1s\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("keeping the running config");
    let kept = tick_count(cluster, &one, "q");
    wait_until("ticks in the kept database after the broken reload", || {
        tick_count(cluster, &one, "q") > kept + 3
    });
    fs::write(
        daemon.config_path(),
        crate::harness::ini(&format!("{base}\ndatabase_list = {two}")),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log(&format!("Unregister database: [{one}]"));
    daemon.wait_for_log(&format!("[{two}]: pgq version ok"));
    let mut observer = cluster.connect("postgres");
    wait_until("pgqd's session in the removed database closed", || {
        pgqd_backends(&mut observer, &one) == 0
    });
    let removed = tick_count(cluster, &one, "q");
    let before = tick_count(cluster, &two, "q");
    wait_until("ticks in the new database", || {
        tick_count(cluster, &two, "q") > before + 3
    });
    let after = tick_count(cluster, &one, "q");
    assert_eq!(after, removed, "ticks in the removed database");
}

/// logrotate: after the file is moved away and SIGHUP sent, new lines go to a new file.
#[test]
fn logfile_reopened_on_sighup() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pgqd.log");
    let daemon = Daemon::start(&format!(
        "base_connstr = {}\ndatabase_list = postgres\nlogfile = {}",
        cluster.connstr(),
        log.display()
    ));
    wait_until("log file written", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("starting database task"))
    });
    fs::rename(&log, dir.path().join("pgqd.log.1")).unwrap();
    daemon.signal(Signal::SIGHUP);
    wait_until("new log file", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("LOG config reloaded"))
    });
    let old = fs::read_to_string(dir.path().join("pgqd.log.1")).unwrap();
    assert!(
        old.contains("Starting pgqd") && !old.contains("config reloaded"),
        "{old}"
    );
}

/// Every line of the log file has pgqd's shape: `YYYY-MM-DD HH:MM:SS.mmm ZONE [pid] TAG msg`.
#[test]
fn text_log_lines_have_pgqd_format() {
    let cluster = Cluster::shared();
    let db = cluster.create_pgq_db("fmt");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pgqd.log");
    let daemon = Daemon::start(&format!(
        "base_connstr = {}\ndatabase_list = {db}, nonexistent_db\nlogfile = {}\nstats_period = 1",
        cluster.connstr(),
        log.display()
    ));
    wait_until("stats line", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("{ticks: "))
    });
    drop(daemon);
    let text = fs::read_to_string(&log).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('\t')) {
        assert!(is_pgqd_line(line), "not pgqd's format: {line:?}");
    }
    assert!(text.contains(&format!("LOG [{db}]: pgq version ok: ")));
}

fn is_pgqd_line(line: &str) -> bool {
    let parts: Vec<&str> = line.splitn(6, ' ').collect();
    let date_ok = parts
        .first()
        .is_some_and(|d| d.len() == 10 && d.as_bytes()[4] == b'-');
    let time_ok = parts
        .get(1)
        .is_some_and(|t| t.len() == 12 && t.as_bytes()[8] == b'.');
    let pid_ok = parts
        .get(3)
        .is_some_and(|p| p.starts_with('[') && p.ends_with(']'));
    let tag_ok = parts
        .get(4)
        .is_some_and(|t| ["FATAL", "ERROR", "WARNING", "LOG", "DEBUG", "NOISE"].contains(t));
    date_ok && time_ok && pid_ok && tag_ok
}

/// `log_format = json`: every line is a JSON object with timestamp, level, message,
/// and the database as a field (its bare name, without pgqd's brackets).
#[test]
fn json_log_lines() {
    let cluster = Cluster::shared();
    let db = cluster.create_pgq_db("json");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pgqd.log");
    let daemon = Daemon::start(&format!(
        "base_connstr = {}\ndatabase_list = {db}\nlogfile = {}\nlog_format = json",
        cluster.connstr(),
        log.display()
    ));
    wait_until("version line", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("pgq version ok"))
    });
    drop(daemon);
    let text = fs::read_to_string(&log).unwrap();
    let mut saw_db = false;
    for line in text.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["timestamp"].is_string()
                && value["level"].is_string()
                && value["message"].is_string(),
            "{line}"
        );
        saw_db |= value["db"] == db.as_str()
            && value["message"]
                .as_str()
                .unwrap()
                .starts_with("pgq version ok");
    }
    assert!(saw_db, "{text}");
}

/// A datagram socket standing in for systemd's NOTIFY_SOCKET, read with the deadline.
fn notify_socket(dir: &Path) -> (std::path::PathBuf, UnixDatagram) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(crate::harness::DEADLINE))
        .unwrap();
    (path, socket)
}

/// With NOTIFY_SOCKET set: READY=1 after start, RELOADING=1 then READY=1 around a
/// reload, STOPPING=1 at shutdown.
#[test]
fn systemd_notifications() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let (socket_path, socket) = notify_socket(dir.path());
    let ini = write_ini(
        dir.path(),
        &format!(
            "base_connstr = {}\ndatabase_list = postgres",
            cluster.connstr()
        ),
    );
    let mut child = crate::harness::KillOnDrop(
        pgqd()
            .arg(&ini)
            .env("NOTIFY_SOCKET", &socket_path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The next notification other than the STATUS= summary lines sent alongside.
    let receive = || loop {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("notification");
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !message.lines().all(|l| l.starts_with("STATUS=")) {
            return message;
        }
    };
    assert!(receive().contains("READY=1"));
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    assert!(receive().contains("RELOADING=1"));
    assert!(receive().contains("READY=1"));
    nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
    assert!(receive().contains("STOPPING=1"));
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `-q` silences the console only: nothing on stdout or stderr, the log file still
/// gets every line.
#[test]
fn quiet_writes_only_the_logfile() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pgqd.log");
    let daemon = Daemon::start_args(
        &format!(
            "base_connstr = {}\ndatabase_list = postgres\nlogfile = {}",
            cluster.connstr(),
            log.display()
        ),
        &["-q", "-v"],
    );
    wait_until("log file lines", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("starting database task"))
    });
    daemon.signal(Signal::SIGINT);
    wait_until("shutdown line", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("Got SIGINT"))
    });
    assert_eq!(daemon.output(), "");
}

/// The systemd watchdog means "the event loop runs", never "every database ticks":
/// while a lock on `pgq.tick` keeps the only database from ticking (its ticker calls
/// time out every second), `WATCHDOG=1` keeps coming well past the old rule's limit
/// (3 ticker timeouts without a tick), so systemd does not kill and restart a daemon
/// that a restart cannot help.
#[test]
fn watchdog_pings_while_no_database_ticks() {
    let cluster = Cluster::shared();
    let db = crate::engine::pgq_db(cluster, "watchdog");
    crate::engine::eager_queue(cluster, &db, "q");
    let dir = tempfile::tempdir().unwrap();
    let (socket_path, socket) = notify_socket(dir.path());
    let ini = write_ini(
        dir.path(),
        &format!(
            "base_connstr = {}\ndatabase_list = {db}\nticker_period = 0.1\nticker_timeout = 1",
            cluster.connstr()
        ),
    );
    let _child = crate::harness::KillOnDrop(
        pgqd()
            .arg(&ini)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let before = crate::engine::all_ticks(cluster, &db);
    wait_until("a tick", || crate::engine::all_ticks(cluster, &db) > before);
    let mut holder = cluster.connect(&db);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("lock table pgq.tick in access exclusive mode")
        .unwrap();
    let locked = Instant::now();
    // Pings seen later than 4 s into the lock, when the old rule had stopped pinging.
    let mut late_pings = 0;
    while late_pings < 5 {
        let mut buf = [0u8; 512];
        let n = socket
            .recv(&mut buf)
            .expect("WATCHDOG=1 while nothing ticks");
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message.contains("WATCHDOG=1") && locked.elapsed() > Duration::from_secs(4) {
            late_pings += 1;
        }
    }
    lock.rollback().unwrap();
}
