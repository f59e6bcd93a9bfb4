//! The rig one fault runs in: databases, daemon, producers; the fault's window
//! (begin, hold, end); and the measurements and checks after it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::engine::{check, lines_with, pgq_db, wait_for};
use crate::harness::{Cluster, DEADLINE, Daemon};

use super::traffic::{APP, Producer, Target, Watch, consume};
use super::{OWN_KEYS, SETTINGS};

/// A queue ticked at every `pgq.ticker()` call, with the consumer registered.
pub const PREPARE_QUEUE: &str = "select pgq.create_queue('q');
    select pgq.set_queue_config('q', 'ticker_max_lag', '0');
    select pgq.set_queue_config('q', 'ticker_idle_period', '0');
    select pgq.register_consumer('q', 'c');";
const CLOCK: &str = "select clock_timestamp()";
const CLEAR_SNAPSHOT: &str = "select pg_stat_clear_snapshot()";
const SESSIONS: &str =
    "select coalesce((select sessions from pg_stat_database where datname = $1), 0)";
const TICKS_SINCE: &str = "select count(*) from pgq.tick where tick_time > $1";
/// Seconds from `$1` to the first tick after it (NULL while there is none).
const FIRST_TICK_AFTER: &str = "select extract(epoch from min(tick_time) - $1::timestamptz)::float8 from pgq.tick where tick_time > $1";
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
    /// Resumption within 60 s covers a refusal's wait of check_period (5 s) with room.
    pub const DEFAULT: Bounds = Bounds {
        complaints: 5,
        sessions: 10,
        resume: Duration::from_secs(60),
    };
}

/// The running fault: when it began and what was counted then.
struct Window {
    name: String,
    faulted: Vec<usize>,
    began: SystemTime,
    started: Instant,
    log_from: usize,
    sessions: Vec<i64>,
    opened: Vec<i64>,
    ended: Option<SystemTime>,
}

/// Databases, the daemon serving them, and a producer in each.
pub struct Rig {
    pub dbs: Vec<String>,
    pub daemon: Daemon,
    watches: Vec<Watch>,
    observer: Watch,
    producers: Vec<Option<Producer>>,
    window: Option<Window>,
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
        let sessions = (0..self.dbs.len()).map(|i| self.sessions(i)).collect();
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

    fn sessions(&mut self, i: usize) -> i64 {
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

    fn opened(&self) -> Vec<i64> {
        self.watches
            .iter()
            .map(|w| w.target.sessions_opened())
            .collect()
    }

    /// Measures the fault, prints the measurements as one line, and asserts them
    /// against `bounds`.
    pub fn finish(mut self, bounds: Bounds) {
        let window = self.window.take().expect("finish() after begin()");
        let ended = window.ended.expect("finish() after end()");
        let resumed = self.resumed(ended, bounds.resume);
        let lost = self.events_lost();
        let sessions = self.sessions_since(&window);
        let output = self.daemon.output();
        let complaints: Vec<usize> = (self.dbs.iter())
            .map(|db| complaints(&output[window.log_from..], db))
            .collect();
        let resume = resume_of(&resumed, &window.faulted);
        eprintln!(
            "fault {} | resume {} | error lines {} | events lost {} of {} | sessions {}",
            window.name,
            resume.map_or("none".into(), |s| format!("{s:.2} s")),
            join(&complaints),
            lost.lost,
            lost.committed,
            join(&sessions),
        );
        let running = self.daemon_running();
        let daemon = &self.daemon;
        check(daemon, running, "pgqd exited");
        for (db, resumed) in self.dbs.iter().zip(&resumed) {
            check(
                daemon,
                resumed.is_some(),
                &format!("{db} never ticked again"),
            );
        }
        check(
            daemon,
            lost.lost == 0,
            &format!("{} events lost", lost.lost),
        );
        check(
            daemon,
            lost.unexpected == 0,
            &format!(
                "{} events read that were not produced, or read twice",
                lost.unexpected
            ),
        );
        for (db, (n, s)) in self.dbs.iter().zip(complaints.iter().zip(&sessions)) {
            check(
                daemon,
                *n <= bounds.complaints,
                &format!("{n} ERROR/WARNING lines for {db}"),
            );
            check(
                daemon,
                *s <= bounds.sessions,
                &format!("{s} new sessions in {db}"),
            );
        }
    }

    /// Seconds from `ended` to each database's first tick after it.
    fn resumed(&mut self, ended: SystemTime, deadline: Duration) -> Vec<Option<f64>> {
        let start = Instant::now();
        let mut resumed = vec![None; self.dbs.len()];
        while start.elapsed() < deadline && resumed.iter().any(Option::is_none) {
            for (watch, slot) in self.watches.iter_mut().zip(&mut resumed) {
                if slot.is_none() {
                    *slot = watch
                        .row(FIRST_TICK_AFTER, &[&ended])
                        .and_then(|r| r.get(0));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        resumed
    }

    /// Stops the producers and reads every batch back.
    fn events_lost(&mut self) -> Lost {
        let mut total = Lost::default();
        for (watch, producer) in self.watches.iter().zip(self.producers.iter_mut()) {
            let Some(producer) = producer.take() else {
                continue;
            };
            let produced = producer.stop();
            let seen = consume(&watch.target, &produced.committed, DEADLINE);
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            seen.iter()
                .for_each(|id| *counts.entry(*id).or_default() += 1);
            let committed: BTreeSet<i64> = produced.committed.iter().copied().collect();
            total.committed += committed.len();
            total.lost += committed
                .iter()
                .filter(|id| !counts.contains_key(id))
                .count();
            total.unexpected += (counts.iter())
                .filter(|&(id, &n)| {
                    !produced.retried.contains(id) && (n > 1 || !committed.contains(id))
                })
                .count();
        }
        total
    }

    /// New sessions per database since the window began, less the rig's own, read once
    /// the count has settled (backends report their statistics about once a second).
    fn sessions_since(&mut self, window: &Window) -> Vec<i64> {
        let read =
            |rig: &mut Rig| -> Vec<i64> { (0..rig.dbs.len()).map(|i| rig.sessions(i)).collect() };
        let mut last = read(self);
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(1500));
            let now = read(self);
            if now == last {
                break;
            }
            last = now;
        }
        let opened = self.opened();
        (0..self.dbs.len())
            .map(|i| (last[i] - window.sessions[i]) - (opened[i] - window.opened[i]))
            .collect()
    }
}

/// Events over all databases: committed, lost, and read unexpectedly.
#[derive(Default)]
struct Lost {
    committed: usize,
    lost: usize,
    unexpected: usize,
}

/// ERROR and WARNING lines about `db`.
fn complaints(output: &str, db: &str) -> usize {
    let label = format!("[{db}]: ");
    lines_with(output, &[&label, " ERROR "]) + lines_with(output, &[&label, " WARNING "])
}

/// The longest resumption among the faulted databases (all, when none is named).
fn resume_of(resumed: &[Option<f64>], faulted: &[usize]) -> Option<f64> {
    let picked: Vec<Option<f64>> = if faulted.is_empty() {
        resumed.to_vec()
    } else {
        faulted.iter().map(|&i| resumed[i]).collect()
    };
    picked
        .iter()
        .copied()
        .try_fold(0.0_f64, |most, r| r.map(|r| most.max(r)))
}

fn join<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

/// The daemon for `dbs`: this pgqd, or the one `PGQD_FAULTS_BINARY` names (then
/// without the keys only this pgqd knows).
fn start_daemon(cluster: &Cluster, dbs: &[String], user: &str, extra: &[&str]) -> Daemon {
    let other = std::env::var_os("PGQD_FAULTS_BINARY");
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
