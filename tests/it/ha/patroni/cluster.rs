//! A real Patroni cluster for the tests: one etcd and two PostgreSQL nodes managed by
//! Patroni, all on 127.0.0.1 with ports and directories of their own. Patroni runs as
//! the `postgres` user when the tests run as root (through `setpriv`, which execs, so
//! the child's pid is Patroni's). Everything is stopped and removed on drop.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    DEADLINE, as_postgres, bindir, free_port, give_to_postgres, unique, wait_until,
};

/// How long Patroni may take to stop its PostgreSQL on drop before both are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// One PostgreSQL node and its Patroni.
pub struct Node {
    pub name: &'static str,
    pub port: u16,
    dir: PathBuf,
    patroni: Child,
}

/// etcd and the Patroni nodes.
pub struct Patroni {
    dir: PathBuf,
    etcd: Child,
    pub nodes: Vec<Node>,
}

impl Patroni {
    /// etcd, then `n1` bootstrapped as the primary, then `n2` streaming from it.
    pub fn start() -> Patroni {
        require_tools();
        let dir = std::env::temp_dir().join(unique("pgqd-patroni"));
        fs::create_dir_all(&dir).unwrap();
        give_to_postgres(&dir);
        let etcd_port = free_port();
        let etcd = start_etcd(&dir, etcd_port);
        let mut cluster = Patroni {
            dir,
            etcd,
            nodes: Vec::new(),
        };
        wait_until("etcd accepting connections", || {
            TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
        });
        for name in ["n1", "n2"] {
            let node = cluster.start_node(name, etcd_port);
            cluster.nodes.push(node);
            if name == "n1" {
                cluster.wait("n1 a writable primary", || writable(cluster.nodes[0].port));
            }
        }
        cluster.wait("n2 streaming from n1", || {
            streams_to(cluster.nodes[0].port, "n2")
        });
        cluster
    }

    fn start_node(&self, name: &'static str, etcd_port: u16) -> Node {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        give_to_postgres(&dir);
        let port = free_port();
        let config = dir.join("patroni.yml");
        fs::write(
            &config,
            node_config(name, &dir, port, free_port(), etcd_port),
        )
        .unwrap();
        give_to_postgres(&config);
        let log = fs::File::create(dir.join("patroni.log")).unwrap();
        let patroni = as_postgres("patroni")
            .arg(&config)
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start patroni");
        Node {
            name,
            port,
            dir,
            patroni,
        }
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// `patronictl switchover` from `leader` to `candidate`, without questions; tried
    /// again while Patroni refuses it (a candidate not yet known as healthy).
    pub fn switchover(&self, leader: &str, candidate: &str) {
        let mut refusal = String::new();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match self.try_switchover(leader, candidate) {
                Ok(()) => return,
                Err(text) => refusal = text,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        self.print_logs();
        panic!("patronictl switchover failed: {refusal}");
    }

    fn try_switchover(&self, leader: &str, candidate: &str) -> Result<(), String> {
        let out = Command::new("patronictl")
            .arg("-c")
            .arg(self.node(leader).dir.join("patroni.yml"))
            .args([
                "switchover",
                "--leader",
                leader,
                "--candidate",
                candidate,
                "--force",
            ])
            .output()
            .expect("run patronictl");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// SIGKILL to the postmaster of `name` (its pid from postmaster.pid).
    pub fn kill_postmaster(&self, name: &str) {
        let pidfile = self.node(name).dir.join("data").join("postmaster.pid");
        let text = fs::read_to_string(&pidfile).unwrap();
        let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }

    /// `wait_until`, printing the Patroni logs when the deadline passes.
    pub fn wait(&self, what: &str, condition: impl FnMut() -> bool) {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_until(what, condition)));
        if let Err(panic) = result {
            self.print_logs();
            std::panic::resume_unwind(panic);
        }
    }

    pub fn print_logs(&self) {
        for node in &self.nodes {
            let log = fs::read_to_string(node.dir.join("patroni.log")).unwrap_or_default();
            eprintln!("patroni {} log:\n{log}", node.name);
        }
    }
}

impl Drop for Patroni {
    fn drop(&mut self) {
        for node in &self.nodes {
            let pid = nix::unistd::Pid::from_raw(node.patroni.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        for node in &mut self.nodes {
            if !exited_within(&mut node.patroni, STOP_GRACE) {
                let _ = node.patroni.kill();
                let _ = node.patroni.wait();
            }
            let _ = as_postgres(&bindir().join("pg_ctl").display().to_string())
                .arg("-D")
                .arg(node.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn exited_within(child: &mut Child, grace: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A client for `db` on the node at `port`, over TCP.
pub fn connect(port: u16, db: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(db)
        .connect_timeout(Duration::from_secs(2))
        .connect(postgres::NoTls)
}

/// Whether the node at `port` accepts writes.
pub fn writable(port: u16) -> bool {
    connect(port, "postgres")
        .and_then(|mut c| c.query_one("select not pg_is_in_recovery()", &[]))
        .is_ok_and(|row| row.get(0))
}

/// Whether the node `replica` streams from the node at `port` (Patroni names a
/// replica's connection after its node; pg_basebackup's own stream, while a replica
/// is being created, is named pg_basebackup).
pub fn streams_to(port: u16, replica: &str) -> bool {
    connect(port, "postgres")
        .and_then(|mut c| {
            c.query_one(
                "select count(*) from pg_stat_replication where state = 'streaming' and application_name = $1",
                &[&replica],
            )
        })
        .is_ok_and(|row| row.get::<_, i64>(0) == 1)
}

/// The test installs nothing itself: scripts/test.sh does.
fn require_tools() {
    for (tool, arg, package) in [
        ("patroni", "--version", "patroni"),
        ("patronictl", "--help", "patroni"),
        ("etcd", "--version", "etcd-server"),
    ] {
        crate::harness::require_tool(tool, arg, package);
    }
}

fn start_etcd(dir: &Path, client_port: u16) -> Child {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let client = format!("http://127.0.0.1:{client_port}");
    let log = fs::File::create(dir.join("etcd.log")).unwrap();
    Command::new("etcd")
        .args(["--name", "pgqd-test", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("pgqd-test={peer}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd")
}

/// Patroni's settings for one node: ttl 10 s and a loop of 1 s, so a switchover takes
/// seconds; trust authentication on 127.0.0.1 only; pg_rewind for the rejoin.
fn node_config(name: &str, dir: &Path, port: u16, rest: u16, etcd: u16) -> String {
    let dir = dir.display();
    let bin = bindir().display().to_string();
    format!(
        "scope: pgqd-test
namespace: /pgqd-test/
name: {name}
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: 'on'
        fsync: 'off'
  initdb:
  - encoding: UTF8
  - auth: trust
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {dir}/data
  bin_dir: {bin}
  pgpass: {dir}/pgpass
  authentication:
    superuser: {{username: postgres, password: unused}}
    replication: {{username: replicator, password: unused}}
    rewind: {{username: postgres, password: unused}}
  parameters:
    unix_socket_directories: {dir}
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication all 127.0.0.1/32 trust
"
    )
}
