//! A daemon watched the way an operator watches it: its `/status`, `/metrics` and
//! `/healthz`, systemd's `STATUS=` line, and its sessions as the server lists them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{Cluster, Daemon, free_port, pgqd};
use crate::observability::{Exposition, get, listen_on};

/// How long a change may take to show: a few check periods and a reconnect, with
/// room for a loaded machine. Waits end as soon as the view is right.
pub const SETTLE: Duration = Duration::from_secs(30);

/// A daemon with its listener and a stand-in for systemd's notify socket.
pub struct Watched {
    pub daemon: Daemon,
    port: u16,
    /// The last `STATUS=` line the daemon sent.
    status_line: Arc<Mutex<String>>,
}

/// What the daemon shows at one moment.
#[derive(Debug, Default, Clone)]
pub struct View {
    /// `/status`: each database's state.
    pub databases: BTreeMap<String, String>,
    /// `/status`: the database tasks alive.
    pub tasks: u64,
    /// `/healthz` (with a 2 s age limit, so a database that cannot tick shows soon).
    pub healthz: u16,
    /// Every `datname` label in `/metrics`.
    pub metric_dbs: BTreeSet<String>,
    /// `pgqd_databases{state}`.
    pub states: BTreeMap<String, u64>,
    /// The sum of `pgqd_connections`.
    pub connections: i64,
    /// The daemon's sessions in `pg_stat_activity`, by database.
    pub sessions: BTreeMap<String, i64>,
    /// systemd's `STATUS=` line.
    pub status_line: String,
}

impl View {
    /// No endpoint names `db`.
    pub fn no_trace_of(&self, db: &str) -> bool {
        !self.databases.contains_key(db) && !self.metric_dbs.contains(db)
    }

    /// The figures agree with each other: `/status`, the state gauge, the task count,
    /// the connection gauge against the server's sessions, the `STATUS=` count.
    pub fn consistent(&self) -> bool {
        let mut states = BTreeMap::new();
        for state in self.databases.values() {
            *states.entry(state.clone()).or_insert(0u64) += 1;
        }
        let known = format!("({} known)", self.databases.len());
        self.states
            .iter()
            .filter(|(_, n)| **n > 0)
            .eq(states.iter())
            && self
                .metric_dbs
                .is_subset(&self.databases.keys().cloned().collect())
            && self.tasks == self.databases.len() as u64
            && self.connections == self.sessions.values().sum::<i64>()
            && self.status_line.contains(&known)
    }

    pub fn sessions_in(&self, db: &str) -> i64 {
        self.sessions.get(db).copied().unwrap_or(0)
    }
}

impl Watched {
    /// Starts pgqd on `cluster` with the listener and `NOTIFY_SOCKET`; auto-detecting
    /// through `postgres` unless `extra` holds a `database_list`.
    pub fn start(cluster: &Cluster, extra: &[&str]) -> Watched {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let status_line = Arc::new(Mutex::new(String::new()));
        let line = status_line.clone();
        std::thread::spawn(move || {
            let _dir = dir;
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(status) = text.lines().find_map(|l| l.strip_prefix("STATUS=")) {
                    *line.lock().unwrap() = status.to_string();
                }
            }
        });
        let port = free_port();
        let mut command = pgqd();
        command.env("NOTIFY_SOCKET", &path);
        let daemon = Daemon::start_command(command, &Watched::ini(cluster, port, extra), &["-v"]);
        Watched {
            daemon,
            port,
            status_line,
        }
    }

    fn ini(cluster: &Cluster, port: u16, extra: &[&str]) -> String {
        let mut ini = format!(
            "base_connstr = {}\ninitial_database = postgres\n{}\n",
            cluster.connstr(),
            listen_on(port)
        );
        for line in super::PERIODS.iter().chain(extra) {
            ini.push_str(line);
            ini.push('\n');
        }
        ini
    }

    /// Rewrites the config with `extra` and sends SIGHUP.
    pub fn reload_to(&self, cluster: &Cluster, extra: &[&str]) {
        let ini = Watched::ini(cluster, self.port, extra);
        std::fs::write(self.daemon.config_path(), crate::harness::ini(&ini)).unwrap();
        self.daemon.signal(Signal::SIGHUP);
    }

    /// What the daemon shows now; `None` while an endpoint does not answer.
    pub fn view(&self, cluster: &Cluster) -> Option<View> {
        let status = crate::observability::request(self.port, "GET", "/status")?.json();
        let databases = status["databases"]
            .as_object()?
            .iter()
            .map(|(name, db)| (name.clone(), db["state"].as_str().unwrap_or("").to_string()))
            .collect();
        let page = Exposition::parse(&get(self.port, "/metrics").body).ok()?;
        let healthz = crate::observability::request(self.port, "GET", "/healthz?max_tick_age=2s")?;
        Some(View {
            databases,
            tasks: status["tasks"].as_u64()?,
            healthz: healthz.status,
            metric_dbs: page
                .samples
                .iter()
                .filter_map(|s| s.labels.get("datname").cloned())
                .collect(),
            states: page
                .named("pgqd_databases")
                .map(|s| (s.labels["state"].clone(), s.value as u64))
                .collect(),
            connections: page.named("pgqd_connections").map(|s| s.value as i64).sum(),
            sessions: sessions(cluster)?,
            status_line: self.status_line.lock().unwrap().clone(),
        })
    }

    /// Polls the view until `condition` holds; on timeout, panics with the last view
    /// and the daemon's output.
    pub fn wait_for(&self, cluster: &Cluster, what: &str, condition: impl Fn(&View) -> bool) {
        if let Err(last) = self.settle(cluster, SETTLE, condition) {
            panic!(
                "timed out waiting for {what}; last view: {last:#?}\npgqd output:\n{}",
                self.daemon.output()
            );
        }
    }

    /// Polls the view until `condition` holds (`Ok`) or `deadline` passes (`Err` with
    /// the last view).
    pub fn settle(
        &self,
        cluster: &Cluster,
        deadline: Duration,
        condition: impl Fn(&View) -> bool,
    ) -> Result<View, Box<View>> {
        let start = Instant::now();
        let mut last = View::default();
        while start.elapsed() < deadline {
            if let Some(view) = self.view(cluster) {
                if condition(&view) {
                    return Ok(view);
                }
                last = view;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(Box::new(last))
    }
}

/// The daemon's sessions (application_name `pgqd`) by database.
fn sessions(cluster: &Cluster) -> Option<BTreeMap<String, i64>> {
    let mut client = cluster.try_connect("postgres")?;
    let rows = client
        .query(
            "select datname, count(*) from pg_stat_activity
              where application_name = 'pgqd' group by datname",
            &[],
        )
        .ok()?;
    Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
