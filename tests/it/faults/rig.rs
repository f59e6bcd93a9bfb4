//! The rig one fault runs in: databases, daemon, producers; the fault's window
//! (begin, hold, end); and the measurements and checks after it.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::engine::{check, pgq_db, wait_for};
use crate::harness::{Cluster, DEADLINE, Daemon};

use super::traffic::{APP, Producer, Target, Watch};
use super::{OWN_KEYS, SETTINGS, compared_binary};

/// A queue ticked at every `pgq.ticker()` call, with the consumer registered.
pub const PREPARE_QUEUE: &str = "select pgq.create_queue('q');
    select pgq.set_queue_config('q', 'ticker_max_lag', '0');
    select pgq.set_queue_config('q', 'ticker_idle_period', '0');
    select pgq.register_consumer('q', 'c');";
const CLOCK: &str = "select clock_timestamp()";
const CLEAR_SNAPSHOT: &str = "select pg_stat_clear_snapshot()";
const SESSIONS: &str =
    "select coalesce((select sessions from pg_stat_database where datname = $1), 0)";
/// Maintenance rounds run in the database: each opens a session of its own, which the
/// session bound does not count.
const MAINT_ROUNDS: &str = "select coalesce(sum(calls), 0)::int8 from pg_stat_user_functions where schemaname = 'pgq' and funcname = 'maint_operations'";
const TICKS_SINCE: &str = "select count(*) from pgq.tick where tick_time > $1";
const EVENTS: &str = "select count(*) from pgq.event_template";
/// pgqd's backends in some databases: every client backend there but the rig's own.
const TERMINATE_PGQD: &str = "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname::text = any($1) and backend_type = 'client backend' and application_name <> $2";
const PGQD_BACKENDS: &str = "select count(*) from pg_stat_activity where datname::text = any($1) and backend_type = 'client backend' and application_name <> $2";

/// What a fault may cost, per database.
pub struct Bounds {
    /// ERROR and WARNING lines.
    pub complaints: usize,
    /// New server sessions opened by the daemon over the fault and its recovery.
    pub sessions: i64,
    /// From the fault's end to the first tick.
    pub resume: Duration,
}

impl Bounds {
    /// A lost connection (restart, terminated backend, a hang): the reconnect backoff
    /// (100 ms doubling to 2 s) brings ticking back within a few seconds; 10 s leaves
    /// room for a loaded machine and fails a regression to pgqd 3.5's 60 s wait.
    pub const DEFAULT: Bounds = Bounds {
        complaints: 5,
        sessions: 10,
        resume: Duration::from_secs(10),
    };

    /// A refusal (connections not allowed, no permission) is tried again after
    /// check_period (5 s in the rig): resumption within check_period + 5 s.
    pub const REFUSAL: Bounds = Bounds {
        resume: Duration::from_secs(10),
        ..Bounds::DEFAULT
    };
}

/// The running fault: when it began and what was counted then.
pub(super) struct Window {
    pub(super) name: String,
    pub(super) faulted: Vec<usize>,
    pub(super) began: SystemTime,
    pub(super) started: Instant,
    pub(super) log_from: usize,
    /// Sessions less maintenance rounds, per database ([`Rig::churn`]).
    pub(super) sessions: Vec<i64>,
    pub(super) opened: Vec<i64>,
    pub(super) ended: Option<SystemTime>,
}

/// Databases, the daemon serving them, and a producer in each.
pub struct Rig {
    pub dbs: Vec<String>,
    pub daemon: Daemon,
    pub(super) watches: Vec<Watch>,
    pub(super) observer: Watch,
    pub(super) producers: Vec<Option<Producer>>,
    pub(super) window: Option<Window>,
}

impl Rig {
    /// `count` pgq databases in `cluster`, served by a daemon connecting as postgres.
    pub fn start(cluster: &Cluster, count: usize, extra: &[&str]) -> Rig {
        Rig::start_as(cluster, count, "postgres", extra)
    }

    /// Like [`Rig::start`], with the daemon connecting as `user`.
    pub fn start_as(cluster: &Cluster, count: usize, user: &str, extra: &[&str]) -> Rig {
        let dbs: Vec<String> = (0..count).map(|_| pgq_db(cluster, "fault")).collect();
        let mut watches: Vec<Watch> = dbs
            .iter()
            .map(|db| Watch::new(Target::new(cluster, db)))
            .collect();
        for watch in &mut watches {
            watch.exec(PREPARE_QUEUE);
        }
        let mut rig = Rig {
            daemon: start_daemon(cluster, &dbs, user, extra),
            dbs,
            watches,
            observer: Watch::new(Target::new(cluster, "postgres")),
            producers: Vec::new(),
            window: None,
        };
        rig.wait_ticking("every database ticking");
        rig.producers = (rig.watches.iter())
            .map(|w| Some(Producer::start(w.target.clone())))
            .collect();
        wait_for(&rig.daemon, "events in every database", || {
            (rig.watches.iter_mut())
                .all(|w| w.row(EVENTS, &[]).is_some_and(|r| r.get::<_, i64>(0) >= 20))
        });
        rig
    }

    fn wait_ticking(&mut self, what: &str) {
        let Rig {
            daemon, watches, ..
        } = self;
        wait_for(daemon, what, || {
            watches.iter_mut().all(|w| {
                let epoch = SystemTime::UNIX_EPOCH;
                w.row(TICKS_SINCE, &[&epoch])
                    .is_some_and(|r| r.get::<_, i64>(0) > 2)
            })
        });
    }

    /// The rig's connection to database `i`.
    pub fn watch(&mut self, i: usize) -> &mut Watch {
        &mut self.watches[i]
    }

    /// Stops the producer of database `i`, whose events are not checked then (its
    /// pgq or the database itself is about to go).
    pub fn forget(&mut self, i: usize) {
        if let Some(producer) = self.producers[i].take() {
            producer.stop();
        }
    }

    /// The fault `name` begins; it touches the databases `faulted`.
    pub fn begin(&mut self, name: &str, faulted: &[usize]) {
        eprintln!("fault {name}: begins");
        let began = self.clock();
        let sessions = (0..self.dbs.len()).map(|i| self.churn(i)).collect();
        self.window = Some(Window {
            name: name.to_string(),
            faulted: faulted.to_vec(),
            began,
            started: Instant::now(),
            log_from: self.daemon.output().len(),
            sessions,
            opened: self.opened(),
            ended: None,
        });
    }

    /// Every database touched.
    pub fn all(&self) -> Vec<usize> {
        (0..self.dbs.len()).collect()
    }

    /// Keeps the fault on until it has lasted `length`, the daemon running all along;
    /// then the databases it does not touch must have kept ticking (at a quarter of
    /// their rate at least).
    pub fn hold(&mut self, length: Duration) {
        let window = self.window.as_ref().expect("hold() after begin()");
        let (started, began) = (window.started, window.began);
        let others: Vec<usize> = (0..self.dbs.len())
            .filter(|i| !window.faulted.contains(i))
            .collect();
        while started.elapsed() < length {
            let running = self.daemon_running();
            check(&self.daemon, running, "pgqd exited");
            std::thread::sleep(Duration::from_millis(100));
        }
        let expected = started.elapsed().as_secs_f64() / 0.2 / 4.0;
        for i in others {
            let ticks = self.watches[i].row(TICKS_SINCE, &[&began]);
            let ticks = ticks.map_or(0, |r| r.get::<_, i64>(0));
            check(
                &self.daemon,
                ticks as f64 >= expected,
                &format!("{} got {ticks} ticks during the fault", self.dbs[i]),
            );
        }
    }

    /// The daemon's lines about database `i` since the fault began that contain
    /// every one of `needles`.
    pub fn lines_about(&self, i: usize, needles: &[&str]) -> usize {
        let window = self.window.as_ref().expect("lines_about() after begin()");
        let label = format!("[{}]: ", self.dbs[i]);
        let output = self.daemon.output();
        (output[window.log_from..].lines())
            .filter(|line| line.contains(&label) && needles.iter().all(|n| line.contains(n)))
            .count()
    }

    /// The server's clock now, to count ticks from.
    pub fn now(&mut self) -> SystemTime {
        self.clock()
    }

    /// Tick rows of database `i` after `since` (the server's clock), read on the rig's
    /// own session, which the faults spare.
    pub fn ticks_since(&mut self, i: usize, since: SystemTime) -> i64 {
        let row = self.watches[i].row(TICKS_SINCE, &[&since]);
        row.map_or(-1, |r| r.get::<_, i64>(0))
    }

    /// The fault is over: its end is the server's clock now.
    pub fn end(&mut self) {
        let now = self.clock();
        self.window.as_mut().expect("end() after begin()").ended = Some(now);
    }

    /// An immediate shutdown resets the statistics: call before it, so sessions count
    /// from zero and the rig's own from now.
    pub fn crash_resets_statistics(&mut self) {
        let opened = self.opened();
        let window = self.window.as_mut().expect("after begin()");
        window.sessions.iter_mut().for_each(|s| *s = 0);
        window.opened = opened;
    }

    /// Database `i` was dropped and created again: its sessions count from zero.
    pub fn recreated(&mut self, i: usize) {
        let opened = self.watches[i].target.sessions_opened();
        let window = self.window.as_mut().expect("after begin()");
        window.sessions[i] = 0;
        window.opened[i] = opened;
    }

    /// Terminates the daemon's backends in the databases `dbs`; returns how many.
    pub fn terminate_pgqd(&mut self, dbs: &[usize]) -> i64 {
        let names: Vec<&str> = dbs.iter().map(|&i| self.dbs[i].as_str()).collect();
        let row = self.observer.row(TERMINATE_PGQD, &[&names, &APP]);
        row.expect("pg_terminate_backend").get(0)
    }

    /// The daemon's backends in the databases `dbs`.
    pub fn pgqd_backends(&mut self, dbs: &[usize]) -> i64 {
        let names: Vec<&str> = dbs.iter().map(|&i| self.dbs[i].as_str()).collect();
        let row = self.observer.row(PGQD_BACKENDS, &[&names, &APP]);
        row.expect("pg_stat_activity").get(0)
    }

    /// Polls `condition` on the rig until it holds, or fails after the deadline with
    /// the daemon's output.
    pub fn wait(&mut self, what: &str, mut condition: impl FnMut(&mut Rig) -> bool) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if condition(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        check(
            &self.daemon,
            false,
            &format!("timed out waiting for {what}"),
        );
    }

    pub fn daemon_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// The server's clock, waiting for the server to answer.
    fn clock(&mut self) -> SystemTime {
        let mut now = None;
        let Rig {
            daemon, observer, ..
        } = self;
        wait_for(daemon, "the server's clock", || {
            now = observer.row(CLOCK, &[]).map(|r| r.get(0));
            now.is_some()
        });
        now.expect("set in the wait")
    }

    pub(super) fn sessions(&mut self, i: usize) -> i64 {
        let db = self.dbs[i].clone();
        let mut sessions = None;
        let Rig {
            daemon, observer, ..
        } = self;
        wait_for(daemon, "pg_stat_database", || {
            observer.row(CLEAR_SNAPSHOT, &[]);
            sessions = observer.row(SESSIONS, &[&db]).map(|r| r.get(0));
            sessions.is_some()
        });
        sessions.expect("set in the wait")
    }

    /// The sessions opened in database `i` less its maintenance rounds (one session
    /// each, by design): what reconnects and other work opened.
    pub(super) fn churn(&mut self, i: usize) -> i64 {
        let sessions = self.sessions(i);
        let watch = &mut self.watches[i];
        watch.row(CLEAR_SNAPSHOT, &[]);
        let rounds: i64 = watch.row(MAINT_ROUNDS, &[]).map_or(0, |r| r.get(0));
        sessions - rounds
    }

    pub(super) fn opened(&self) -> Vec<i64> {
        self.watches
            .iter()
            .map(|w| w.target.sessions_opened())
            .collect()
    }
}

/// The daemon for `dbs`: this pgqd, or the one `PGQD_FAULTS_BINARY` names (then
/// without the keys only this pgqd knows).
fn start_daemon(cluster: &Cluster, dbs: &[String], user: &str, extra: &[&str]) -> Daemon {
    let other = compared_binary();
    let mut ini = format!(
        "base_connstr = host={} port={} user={user}\ndatabase_list = {}\n",
        cluster.dir.display(),
        cluster.port,
        dbs.join(", ")
    );
    for line in SETTINGS.iter().chain(extra) {
        let key = line.split('=').next().unwrap_or_default().trim();
        if other.is_none() || !OWN_KEYS.contains(&key) {
            ini.push_str(line);
            ini.push('\n');
        }
    }
    match other {
        Some(binary) => Daemon::start_binary(Path::new(&binary), &ini, &["-v"]),
        None => Daemon::start(&ini),
    }
}
