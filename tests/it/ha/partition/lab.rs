//! The lab one partition case runs in: a cluster of its own listening on the root
//! ends of two veth pairs, instance A (`pgqd_a`) and instance B (`pgqd_b`) each in a
//! namespace of its own reaching it over TCP, a producer and a consumer of numbered
//! events and the sampler over the unix socket; and the checks every case ends with.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::engine::{eager_queue, pgq_db};
use crate::harness::{Cluster, DEADLINE, Daemon, poll, require_tool};
use crate::observability::request;

use super::super::exactly_once::{Consumer, Producer, exactly_once};
use super::super::{LOG_TICKS, lock_holder, tick_runs};
use super::netns::{Cut, Netns};
use super::sampler::{Sample, Sampler, crowded, holder_changes};

/// The instances' ticker period; the sampler counts a ticker call as current for two.
pub const PERIOD: Duration = Duration::from_millis(200);
/// Instance A leads from the start, B follows.
pub const A: usize = 0;
pub const B: usize = 1;
pub const APPS: [&str; 2] = ["pgqd_a", "pgqd_b"];
const QUEUE: &str = "q";
/// Each instance's HTTP listener, on its namespace's loopback.
const HTTP_PORT: u16 = 9651;
/// The first tick (of anyone) after a time, as seconds since the epoch.
const FIRST_TICK: &str = "select extract(epoch from min(at))::float8 from public.tick_log where at > to_timestamp($1) and ($2::text is null or app = $2)";
/// The tick times between two times, of `app` or of anyone, in order.
const TICKS: &str = "select extract(epoch from at)::float8 from public.tick_log where at > to_timestamp($1) and at < to_timestamp($2) and ($3::text is null or app = $3) order by id";
/// Whether `app` has a session whose last statement, started after a time, tried the lock.
const TRIES_LOCK: &str = "select exists(select from pg_stat_activity where datname = current_catalog and application_name = $1 and query like '%pg_try_advisory_lock%' and query_start > to_timestamp($2))";
/// The sessions of `app` in the database.
const BACKENDS: &str = "select count(*) from pg_stat_activity where datname = current_catalog and application_name = $1";

/// The whole lab. Fields drop in order: our clients and threads, then the instances,
/// then their namespaces, then the cluster.
pub struct Lab {
    client: postgres::Client,
    producer: Option<Producer>,
    consumer: Option<Consumer>,
    sampler: Option<Sampler>,
    daemons: Vec<Daemon>,
    nets: [Netns; 2],
    cluster: Cluster,
    db: String,
}

impl Lab {
    /// Plumbs the namespaces, starts the cluster, the traffic, the sampler and A; once
    /// A leads, starts B and waits until it follows.
    pub fn start(prefix: &str) -> Lab {
        require_root();
        require_tool("ip", "-V", "iproute2");
        require_tool("iptables", "-V", "iptables");
        let nets = [Netns::create(), Netns::create()];
        let listen = format!(
            "listen_addresses = '{}, {}'",
            nets[A].server_addr(),
            nets[B].server_addr()
        );
        let cluster = Cluster::start_with(&[&listen]);
        let db = pgq_db(&cluster, prefix);
        eager_queue(&cluster, &db, QUEUE);
        cluster.exec(&db, LOG_TICKS);
        allow(&cluster, &nets);
        let consumer = Consumer::start(&cluster, &db, QUEUE);
        let producer = Producer::start(&cluster, &db, QUEUE);
        let sampler = Sampler::start(cluster.connect(&db), PERIOD * 2);
        let mut lab = Lab {
            client: cluster.connect(&db),
            producer: Some(producer),
            consumer: Some(consumer),
            sampler: Some(sampler),
            daemons: Vec::new(),
            nets,
            cluster,
            db,
        };
        for i in [A, B] {
            lab.reachable(i);
        }
        lab.daemons.push(lab.spawn(A));
        lab.wait("pgqd_a leading", DEADLINE, |lab| {
            lab.holder().as_deref() == Some(APPS[A])
        });
        lab.daemons.push(lab.spawn(B));
        lab.wait("pgqd_b following", DEADLINE, |lab| {
            lab.output(B).contains("following:")
        });
        lab
    }

    /// Instance `i` in its namespace, connecting over its veth.
    fn spawn(&self, i: usize) -> Daemon {
        let ini = format!(
            "base_connstr = host={} port={} user=postgres application_name={}\ndatabase_list = {}\nticker_period = {}\nhttp_listen = 127.0.0.1:{HTTP_PORT}\n",
            self.nets[i].server_addr(),
            self.cluster.port,
            APPS[i],
            self.db,
            PERIOD.as_secs_f64()
        );
        let program = self.nets[i].command(Path::new(env!("CARGO_BIN_EXE_pgqd")));
        Daemon::start_command(program, &ini, &["-v"])
    }

    /// Waits until a session from inside namespace `i` reaches the server (the
    /// plumbing works, pg_hba.conf is reloaded).
    fn reachable(&self, i: usize) {
        let (host, port, db) = (self.nets[i].server_addr(), self.cluster.port, &self.db);
        let connects = || {
            let mut config = postgres::Config::new();
            config.host(&host).port(port).user("postgres").dbname(db);
            config.connect_timeout(Duration::from_secs(2));
            self.nets[i]
                .within(|| config.connect(postgres::NoTls).map(drop))
                .is_ok()
        };
        assert!(
            poll(DEADLINE, connects),
            "the server is not reachable from namespace {} at {host}:{port}",
            self.nets[i].name
        );
    }

    /// The `application_name` of the leader lock's holder, if any.
    pub fn holder(&mut self) -> Option<String> {
        lock_holder(&mut self.client).unwrap()
    }

    /// Cuts instance `i` off; when.
    pub fn cut(&self, i: usize, cut: Cut) -> SystemTime {
        self.nets[i].cut(cut);
        SystemTime::now()
    }

    /// Kills instance `i` (SIGKILL): with its link cut, its kernel's goodbye never
    /// reaches the server, as when a host vanishes.
    pub fn kill(&mut self, i: usize) {
        let _ = self.daemons[i].child.kill();
        let _ = self.daemons[i].child.wait();
    }

    /// Heals instance `i`'s link; when.
    pub fn heal(&self, i: usize) -> SystemTime {
        self.nets[i].heal();
        SystemTime::now()
    }

    /// The first tick after `after`, by `app` or by anyone.
    pub fn first_tick(&mut self, app: Option<&str>, after: SystemTime) -> Option<SystemTime> {
        let row = self.client.query_one(FIRST_TICK, &[&epoch(after), &app]);
        let secs: Option<f64> = row.unwrap().get(0);
        secs.map(|s| UNIX_EPOCH + Duration::from_secs_f64(s))
    }

    /// The longest time in [`from`, `to`] without a tick (of `app`, or of anyone), in
    /// seconds.
    pub fn longest_gap(&mut self, app: Option<&str>, from: SystemTime, to: SystemTime) -> f64 {
        let (from, to) = (epoch(from), epoch(to));
        let rows = (self.client.query(TICKS, &[&from, &to, &app])).unwrap();
        let mut times: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
        times.insert(0, from);
        times.push(to);
        times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
    }

    /// The instance holding the lock (`A` when none does).
    pub fn leader(&mut self) -> usize {
        let holder = self.holder();
        usize::from(holder.as_deref() == Some(APPS[B]))
    }

    /// Whether instance `i` tried the lock on a session after `since`.
    pub fn tries_lock_since(&mut self, i: usize, since: SystemTime) -> bool {
        let row = self
            .client
            .query_one(TRIES_LOCK, &[&APPS[i], &epoch(since)]);
        row.unwrap().get(0)
    }

    /// The number of instance `i`'s sessions on the server.
    pub fn backends(&mut self, i: usize) -> i64 {
        self.client.query_one(BACKENDS, &[&APPS[i]]).unwrap().get(0)
    }

    /// The status code of instance `i`'s `/healthz`, asked inside its namespace.
    pub fn healthz(&self, i: usize) -> Option<u16> {
        self.nets[i].within(|| request(HTTP_PORT, "GET", "/healthz").map(|r| r.status))
    }

    /// Everything instance `i` wrote so far.
    pub fn output(&self, i: usize) -> String {
        self.daemons[i].output()
    }

    /// Polls `condition` every 100 ms until it holds; after `deadline`, fails with
    /// both instances' output.
    pub fn wait(
        &mut self,
        what: &str,
        deadline: Duration,
        mut condition: impl FnMut(&mut Lab) -> bool,
    ) {
        let start = Instant::now();
        while !condition(self) {
            self.check(
                start.elapsed() < deadline,
                &format!("timed out after {deadline:?} waiting for {what}"),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails with both instances' output unless `condition` holds.
    pub fn check(&self, condition: bool, what: &str) {
        if !condition {
            for (i, app) in APPS.iter().enumerate().take(self.daemons.len()) {
                eprintln!("{app} output:\n{}", self.output(i));
            }
            panic!("{what}");
        }
    }

    /// Sleeps until `at`.
    pub fn hold_until(&self, at: Instant) {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
    }

    /// The checks every case ends with: each committed event delivered exactly once;
    /// no sample saw two instances ticking or holding the lock; the ticks form runs
    /// (by application_name) of the leaderships the sampler saw, in order (a
    /// leadership too short to tick may show in the samples only), and when `runs` is
    /// given, those runs. Prints one summary line.
    pub fn finish(mut self, case: &str, runs: Option<&[&str]>) {
        let produced = self.producer.take().unwrap().stop();
        let consumer = self.consumer.take().unwrap();
        let consumed = consumer.drain(&produced, DEADLINE * 2);
        let samples = self.sampler.take().unwrap().stop();
        let delivery = match exactly_once(&produced, &consumed) {
            Ok(summary) => summary,
            Err(problem) => return self.check(false, &format!("{case}: {problem}")),
        };
        let crowded = crowded(&samples);
        self.check(
            crowded.is_empty(),
            &format!(
                "{case}: {} of {} samples saw two instances at once, first {:?}",
                crowded.len(),
                samples.len(),
                crowded.first()
            ),
        );
        let seen = tick_runs(&mut self.client);
        let led = leaderships(&samples);
        self.check(
            within(&seen, &led),
            &format!("{case}: tick runs {seen:?}, leaderships sampled {led:?}"),
        );
        if let Some(runs) = runs {
            self.check(
                seen == runs,
                &format!("{case}: tick runs {seen:?}, expected {runs:?}"),
            );
        }
        eprintln!(
            "partition {case}: {delivery}; {} samples, never two tickers or holders; tick runs {seen:?}; lock holders: {}",
            samples.len(),
            timeline(&samples)
        );
    }
}

/// Whether `runs` is `led` with some entries left out.
fn within(runs: &[String], led: &[String]) -> bool {
    let mut led = led.iter();
    runs.iter().all(|run| led.any(|l| l == run))
}

/// The holders of the lock in turn, as the sampler saw them (no holder left out).
fn leaderships(samples: &[Sample]) -> Vec<String> {
    let mut led: Vec<String> = Vec::new();
    for (_, holder) in holder_changes(samples) {
        if let Some(holder) = holder
            && led.last() != Some(&holder)
        {
            led.push(holder);
        }
    }
    led
}

/// The lock's holders in turn, each with when it was first seen (seconds from the
/// first sample).
fn timeline(samples: &[Sample]) -> String {
    let Some(first) = samples.first() else {
        return "no samples".into();
    };
    let changes = holder_changes(samples).into_iter().map(|(at, holder)| {
        let after = at
            .duration_since(first.at)
            .unwrap_or_default()
            .as_secs_f64();
        format!("{} at {after:.1} s", holder.as_deref().unwrap_or("none"))
    });
    changes.collect::<Vec<_>>().join(", ")
}

/// Seconds since the epoch, as PostgreSQL's `to_timestamp` takes them.
fn epoch(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Lets the instances' addresses in (`trust`, as the harness's socket is), and reloads.
fn allow(cluster: &Cluster, nets: &[Netns; 2]) {
    let path = cluster.data().join("pg_hba.conf");
    let mut hba = std::fs::read_to_string(&path).unwrap();
    for net in nets {
        hba.push_str(&format!("host all postgres {}/32 trust\n", net.addr()));
    }
    std::fs::write(&path, hba).unwrap();
    cluster.exec("postgres", "select pg_reload_conf()");
}

/// The partition cases need root: namespaces, veth pairs and iptables. Not root is a
/// failure with the reason, never a silent pass (CI runs as root).
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the partition tests need root (ip netns, veth pairs, iptables in the test's namespaces): run them as root, as scripts/test.sh in CI does"
    );
}
