//! Throwaway PostgreSQL clusters with pgq, and the pgqd binary as a child process.
//!
//! A [`Cluster`] lives in a temp dir: its own port, a unix socket in that dir,
//! `listen_addresses = ''`, fsync off. When the tests run as root, initdb and the
//! server run as the `postgres` system user. An owned cluster is stopped and removed on
//! drop (also when the test panics); the shared one is removed by a small reaper
//! process that waits for the test binary to exit, since statics are never dropped.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for a condition before failing: generous, never a timing claim.
pub const DEADLINE: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name unique within this test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `condition` every 20 ms until it holds (`true`) or `deadline` passes
/// (`false`): the one polling loop of the tests.
pub fn poll(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1: bound, read and released (a server is given a port
/// of its own because `:0` would not tell the test which one it got).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Fails the test, saying which Debian package brings it, unless `program` runs with
/// `arg`: the tests install nothing themselves, scripts/test.sh does.
pub fn require_tool(program: &str, arg: &str, package: &str) {
    let found = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is not installed (Debian package {package}): run scripts/test.sh"
    );
}

/// Debian's pgqd 3.5 as scripts/test.sh unpacks it (never installed) into
/// `$XDG_CACHE_HOME/pgqd-reference` (default `~/.cache`): the reference a test runs
/// beside ours. Read from there, not from `PGQD_REFERENCE`: a `PGQD_*` variable in the
/// tests' environment would reach every daemon they start.
pub fn reference_pgqd() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp/.cache"));
    let program = cache.join("pgqd-reference/usr/bin/pgqd");
    require_tool(
        program.to_str().unwrap(),
        "-V",
        "pgqd (unpacked, not installed)",
    );
    program
}

/// A child process killed on drop, so a failing test leaves no daemon behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `deadline` for `child` to exit; `None` if it is still running.
pub fn wait_child(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let mut exited = None;
    poll(deadline, || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    });
    exited
}

/// Polls `condition` until it holds, failing the test after `DEADLINE`.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    if !poll(DEADLINE, condition) {
        panic!("timed out after {DEADLINE:?} waiting for {what}");
    }
}

/// The text of a pgqd config file: the `[pgqd]` header, syslog off (tests read the
/// console or the log file), then `body`.
pub fn ini(body: &str) -> String {
    format!("[pgqd]\nsyslog = 0\n{body}\n")
}

/// The PostgreSQL server binaries: `$TEST_PG_BINDIR` (set by scripts/pg-matrix.sh
/// to test other majors; not `PGQD_*`, which every daemon started here would read as
/// its own settings), else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` that has initdb.
pub fn bindir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("TEST_PG_BINDIR") {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("initdb").exists(),
                "TEST_PG_BINDIR={} has no initdb",
                dir.display()
            );
            return dir;
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return dir;
            }
        }
        let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server not installed: run scripts/test.sh")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .collect();
        found.sort_by_key(|p| {
            p.to_string_lossy()
                .split('/')
                .nth(4)
                .and_then(|v| v.parse::<u32>().ok())
        });
        found
            .pop()
            .expect("no initdb under /usr/lib/postgresql/*/bin")
    })
    .clone()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command for a server binary, run as `postgres` when we are root.
fn server_command(program: &str) -> Command {
    let path = bindir().join(program);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

/// `program` run as the postgres user when we are root (through `setpriv`, which
/// execs, so the child's pid is the program's): servers that refuse to run as root.
pub fn as_postgres(program: &str) -> Command {
    if !is_root() {
        return Command::new(program);
    }
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        program,
    ]);
    cmd
}

/// Makes `path` the postgres user's when we are root.
pub fn give_to_postgres(path: &Path) {
    if is_root() {
        let pg = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("no postgres user");
        nix::unistd::chown(path, Some(pg.uid), Some(pg.gid)).unwrap();
    }
}

fn run_checked(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One throwaway PostgreSQL cluster.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    owned: bool,
}

impl Cluster {
    /// A cluster of its own, for tests that stop or restart the server.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A cluster of its own with extra postgresql.conf lines.
    pub fn start_with(settings: &[&str]) -> Cluster {
        let cluster = Cluster::empty();
        run_checked(
            server_command("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(cluster.data()),
        );
        cluster.configure(settings);
        cluster.start_server();
        // pgq's extension script creates these cluster-wide roles only if missing; two
        // databases installing pgq at once could both try. Create them up front.
        cluster.exec("postgres", "begin read write; create role pgq_reader; create role pgq_writer; create role pgq_admin in role pgq_reader, pgq_writer; commit");
        cluster
    }

    /// A hot standby of `primary`, streaming from it: a base backup with
    /// `standby.signal` and `primary_conninfo` (`pg_basebackup -R`), started.
    pub fn standby_of(primary: &Cluster) -> Cluster {
        let cluster = Cluster::empty();
        run_checked(
            server_command("pg_basebackup")
                .arg("-h")
                .arg(&primary.dir)
                .arg("-p")
                .arg(primary.port.to_string())
                .args(["-U", "postgres", "-R", "-X", "stream", "-c", "fast", "-D"])
                .arg(cluster.data()),
        );
        cluster.configure(&["hot_standby = on"]);
        cluster.start_server();
        cluster
    }

    /// A temp dir owned by the server's user and a free port; no data directory yet.
    fn empty() -> Cluster {
        let dir = std::env::temp_dir().join(unique("pgqd-it"));
        fs::create_dir_all(&dir).unwrap();
        give_to_postgres(&dir);
        let port = 20000
            + (std::process::id() % 20000) as u16
            + NEXT.fetch_add(1, Ordering::Relaxed) as u16;
        Cluster {
            dir,
            port,
            owned: true,
        }
    }

    /// Appends this cluster's port, socket directory and test settings to
    /// postgresql.conf (later lines win, so a base backup's copy is overridden).
    fn configure(&self, settings: &[&str]) {
        let mut conf = format!(
            "\nport = {}\nunix_socket_directories = '{}'\nlisten_addresses = ''\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\ntrack_functions = all\nmax_connections = 200\nlog_min_messages = warning\n",
            self.port,
            self.dir.display()
        );
        for line in settings {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = self.data().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        fs::write(&conf_path, text).unwrap();
    }

    /// The cluster shared by the tests of this binary; each test uses its own database.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut cluster = Cluster::start();
            cluster.owned = false;
            cluster.spawn_reaper();
            cluster
        })
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `base_connstr` for pgqd.
    pub fn connstr(&self) -> String {
        format!(
            "host={} port={} user=postgres",
            self.dir.display(),
            self.port
        )
    }

    pub fn connect(&self, db: &str) -> postgres::Client {
        self.try_connect_err(db)
            .unwrap_or_else(|e| panic!("connect to {db}: {e}"))
    }

    /// A connection to `db`, or `None` (the server is restarting, say).
    pub fn try_connect(&self, db: &str) -> Option<postgres::Client> {
        self.try_connect_err(db).ok()
    }

    fn try_connect_err(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        let mut config = postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(db);
        config.connect(postgres::NoTls)
    }

    /// Runs SQL in `db`, panicking with the error on failure.
    pub fn exec(&self, db: &str, sql: &str) {
        self.connect(db)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// A new database with pgq installed.
    pub fn create_pgq_db(&self, prefix: &str) -> String {
        let name = self.create_db(prefix);
        self.install_pgq(&name);
        name
    }

    /// `create extension pgq` in `db`, safe against the race of concurrent first
    /// installs: the extension script creates the cluster-wide roles pgq_reader,
    /// pgq_writer and pgq_admin after checking that they do not exist, so two databases
    /// installing it at once can fail on a role; the retry then finds them.
    pub fn install_pgq(&self, db: &str) {
        let mut client = self.connect(db);
        if let Err(first) = client.batch_execute("create extension pgq")
            && let Err(e) = client.batch_execute("create extension pgq")
        {
            panic!("create extension pgq in {db}: {first:?}, then {e:?}");
        }
    }

    /// A new empty database.
    pub fn create_db(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.exec("postgres", &format!("create database \"{name}\""));
        name
    }

    pub fn start_server(&self) {
        self.pg_ctl(&["-w", "start"]);
    }

    pub fn stop_server(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }

    /// `pg_ctl restart -m <mode>` (fast, immediate): waits until the server is up again.
    pub fn restart_server(&self, mode: &str) {
        self.pg_ctl(&["-m", mode, "-w", "restart"]);
    }

    /// `pg_ctl` on this cluster, the server's output going to `server.log`.
    fn pg_ctl(&self, args: &[&str]) {
        run_checked(
            server_command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(args),
        );
    }

    /// The postmaster's pid (first line of `postmaster.pid`) and the pids of its
    /// children (the backends and auxiliary processes), read from `/proc`.
    pub fn server_pids(&self) -> Vec<i32> {
        let pidfile = fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let postmaster: i32 = pidfile.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![postmaster];
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The fields after the command name (in parentheses): state, then ppid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// `pg_ctl promote`: a standby becomes a primary (waits until it accepts writes).
    pub fn promote(&self) {
        run_checked(
            server_command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-w", "promote"]),
        );
    }

    /// Stops the server when the test binary exits, however it exits.
    fn spawn_reaper(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = self.stop_command_line(),
            dir = self.dir.display()
        );
        let mut cmd = Command::new("setsid");
        cmd.args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The reaper must outlive us, so it is deliberately never waited for.
        #[allow(clippy::zombie_processes)]
        cmd.spawn().expect("spawn cluster reaper");
    }

    fn stop_command_line(&self) -> String {
        let pg_ctl = bindir().join("pg_ctl");
        let runuser = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{runuser}{} -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            self.data().display()
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new("sh")
                .args(["-c", &self.stop_command_line()])
                .output();
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The pgqd binary under test.
pub fn pgqd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgqd"))
}

/// A pgqd daemon running in the foreground as a child; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Writes `ini` (a `[pgqd]` body) to a file and starts `pgqd -v` on it, stderr
    /// captured to `output.log` next to it.
    pub fn start(ini: &str) -> Daemon {
        Daemon::start_args(ini, &["-v"])
    }

    pub fn start_args(ini: &str, args: &[&str]) -> Daemon {
        Daemon::spawn(pgqd(), ini, args)
    }

    /// Like [`Daemon::start_args`] with another pgqd binary (pgqd 3.5, to compare).
    pub fn start_binary(binary: &Path, ini: &str, args: &[&str]) -> Daemon {
        Daemon::spawn(Command::new(binary), ini, args)
    }

    /// Like [`Daemon::start_args`] with a prepared command (environment set, say).
    pub fn start_command(program: Command, ini: &str, args: &[&str]) -> Daemon {
        Daemon::spawn(program, ini, args)
    }

    fn spawn(mut program: Command, ini: &str, args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pgqd.ini");
        fs::write(&config, self::ini(ini)).unwrap();
        let output = fs::File::create(dir.path().join("output.log")).unwrap();
        let child = program
            .args(args)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap();
        Daemon { child, dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pgqd.ini")
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
    }

    /// Waits until the output contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        if poll(DEADLINE, || self.output().contains(needle)) {
            return;
        }
        panic!(
            "timed out waiting for log line {needle:?}; output:\n{}",
            self.output()
        );
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        match wait_child(&mut self.child, DEADLINE) {
            Some(status) => status.code(),
            None => panic!("pgqd did not exit; output:\n{}", self.output()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Number of `pgq.ticker()` calls counted by the server in `db` (needs
/// `track_functions = all`; statistics are flushed by backends within about a second).
pub fn ticker_calls(cluster: &Cluster, db: &str) -> i64 {
    let mut client = cluster.connect(db);
    let row = client
        .query_one(
            "select coalesce(sum(calls), 0)::int8 from pg_stat_user_functions where schemaname = 'pgq' and funcname = 'ticker'",
            &[],
        )
        .unwrap();
    row.get(0)
}

/// The number of ticks recorded for `queue` in `db`.
pub fn tick_count(cluster: &Cluster, db: &str, queue: &str) -> i64 {
    let mut client = cluster.connect(db);
    client
        .query_one(
            "select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = $1",
            &[&queue],
        )
        .unwrap()
        .get(0)
}

pub fn path_str(path: &Path) -> String {
    path.display().to_string()
}
