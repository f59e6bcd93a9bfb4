//! A model-based test of the database set: random sequences of what happens to a real
//! cluster's databases (created with or without pgq, pgq installed and dropped,
//! dropped, renamed, connections disallowed, made templates, queues created, dropped
//! and paused, `database_list` reloaded, SIGHUP, a fast server restart), and after each
//! step the daemon must show what a small model of the cluster says it should.
//!
//! Seeded and reproducible: the seed of each sequence is printed; run one again with
//! `LIFECYCLE_SEED=<seed> LIFECYCLE_SEQUENCES=1 cargo test --test it lifecycle::model`.
//! `LIFECYCLE_SEQUENCES` and `LIFECYCLE_STEPS` make the run longer (before a release:
//! `LIFECYCLE_SEQUENCES=40 LIFECYCLE_STEPS=25`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use super::observe::{SETTLE, View, Watched};
use crate::engine::ident;
use crate::harness::{Cluster, pgqd, unique};

/// One database as the model knows it.
#[derive(Debug, Clone)]
struct Db {
    pgq: bool,
    queue: bool,
    allow: bool,
    template: bool,
}

/// The cluster's databases and the daemon's `database_list` (`None`: auto-detection).
#[derive(Debug, Clone)]
struct Model {
    dbs: BTreeMap<String, Db>,
    list: Option<Vec<String>>,
}

/// What can happen; one step is one of these.
#[derive(Debug, Clone)]
enum Op {
    Create { pgq: bool },
    InstallPgq(String),
    DropPgq(String),
    Drop(String),
    Rename(String, String),
    AllowConnections(String, bool),
    Template(String, bool),
    CreateQueue(String),
    DropQueue(String),
    PauseQueue(String),
    Reload(Option<Vec<String>>),
    Sighup,
    Restart,
}

/// The kinds of [`Op`], dealt like cards so that every kind comes up in every run.
const KINDS: usize = 13;

impl Model {
    fn new() -> Model {
        let postgres = Db {
            pgq: false,
            queue: false,
            allow: true,
            template: false,
        };
        Model {
            dbs: BTreeMap::from([("postgres".to_string(), postgres)]),
            list: None,
        }
    }

    /// The databases the daemon serves, each in the state it should show.
    fn served(&self) -> BTreeMap<String, &'static str> {
        let state = |name: &String| match self.dbs.get(name) {
            None => "backing_off",
            Some(db) if !db.allow => "backing_off",
            Some(db) if db.pgq => "ticking",
            Some(_) => "no_pgq",
        };
        let names: Vec<String> = match &self.list {
            Some(list) => list.clone(),
            None => (self.dbs.iter())
                .filter(|(_, d)| d.allow && !d.template)
                .map(|(n, _)| n.clone())
                .collect(),
        };
        names.iter().map(|n| (n.clone(), state(n))).collect()
    }

    /// The databases a step may change (postgres is the initial database: kept).
    fn ours(&self, rng: &mut Rng, which: impl Fn(&Db) -> bool) -> Option<String> {
        let names: Vec<&String> = (self.dbs.iter())
            .filter(|(n, d)| *n != "postgres" && which(d))
            .map(|(n, _)| n)
            .collect();
        (!names.is_empty()).then(|| names[rng.below(names.len())].clone())
    }

    /// An operation of kind `kind` that applies now, if any.
    fn op(&self, kind: usize, rng: &mut Rng) -> Option<Op> {
        let any = |_: &Db| true;
        Some(match kind {
            0 => Op::Create {
                pgq: rng.below(3) > 0,
            },
            1 => Op::InstallPgq(self.ours(rng, |d| !d.pgq && d.allow)?),
            2 => Op::DropPgq(self.ours(rng, |d| d.pgq && d.allow)?),
            // PostgreSQL refuses to drop a template database.
            3 => Op::Drop(self.ours(rng, |d| !d.template)?),
            4 => Op::Rename(self.ours(rng, any)?, unique("ren")),
            5 => {
                let name = self.ours(rng, any)?;
                let allow = !self.dbs[&name].allow;
                Op::AllowConnections(name, allow)
            }
            6 => {
                let name = self.ours(rng, any)?;
                let template = !self.dbs[&name].template;
                Op::Template(name, template)
            }
            7 => Op::CreateQueue(self.ours(rng, |d| d.pgq && d.allow && !d.queue)?),
            8 => Op::DropQueue(self.ours(rng, |d| d.queue && d.allow)?),
            9 => Op::PauseQueue(self.ours(rng, |d| d.queue && d.allow)?),
            10 => Op::Reload(self.random_list(rng)),
            11 => Op::Sighup,
            _ => Op::Restart,
        })
    }

    /// Auto-detection one time in three, else some of the databases, sometimes with a
    /// name that does not exist.
    fn random_list(&self, rng: &mut Rng) -> Option<Vec<String>> {
        if rng.below(3) == 0 {
            return None;
        }
        let mut list: Vec<String> = (self.dbs.keys())
            .filter(|_| rng.below(2) == 0)
            .cloned()
            .collect();
        if list.is_empty() || rng.below(3) == 0 {
            list.push(unique("ghost"));
        }
        Some(list)
    }

    /// The model after `op`.
    fn apply(&mut self, op: &Op, created: &str) {
        fn db<'m>(m: &'m mut Model, n: &str) -> &'m mut Db {
            m.dbs.get_mut(n).expect("in the model")
        }
        match op {
            Op::Create { pgq } => {
                let new = Db {
                    pgq: *pgq,
                    queue: false,
                    allow: true,
                    template: false,
                };
                self.dbs.insert(created.to_string(), new);
            }
            Op::InstallPgq(n) => db(self, n).pgq = true,
            Op::DropPgq(n) => {
                let d = db(self, n);
                (d.pgq, d.queue) = (false, false);
            }
            Op::Drop(n) => {
                self.dbs.remove(n);
            }
            Op::Rename(old, new) => {
                let d = self.dbs.remove(old).expect("in the model");
                self.dbs.insert(new.clone(), d);
            }
            Op::AllowConnections(n, allow) => db(self, n).allow = *allow,
            Op::Template(n, template) => db(self, n).template = *template,
            Op::CreateQueue(n) => db(self, n).queue = true,
            Op::DropQueue(n) => db(self, n).queue = false,
            Op::Reload(list) => self.list = list.clone(),
            Op::PauseQueue(_) | Op::Sighup | Op::Restart => {}
        }
    }

    /// Why `view` is not what the model says, or `None` when it is.
    fn mismatch(&self, view: &View) -> Option<String> {
        let served = self.served();
        let shown: BTreeMap<String, &str> = (view.databases.iter())
            .map(|(n, s)| (n.clone(), s.as_str()))
            .collect();
        if shown != served {
            return Some(format!("/status shows {shown:?}, the model {served:?}"));
        }
        let healthy = served.values().all(|s| *s != "backing_off");
        if (view.healthz == 200) != healthy {
            return Some(format!("/healthz is {}, healthy: {healthy}", view.healthz));
        }
        if !view.consistent() {
            return Some("the figures disagree with each other".into());
        }
        let ticking = served.values().filter(|s| **s == "ticking").count();
        let should = served.values().filter(|s| **s != "no_pgq").count();
        let line = format!(
            "ticking {ticking}/{should} databases ({} known)",
            served.len()
        );
        if !view.status_line.starts_with(&line) {
            return Some(format!("STATUS= is {:?}, not {line:?}", view.status_line));
        }
        let stray = view
            .sessions
            .keys()
            .find(|d| served.get(*d) != Some(&"ticking"));
        stray.map(|d| format!("a session in {d}, which should have none"))
    }
}

/// Does `op` to the cluster; returns the name of a database it created.
fn perform(op: &Op, cluster: &Cluster, watched: &Watched) -> String {
    let run = |db: &str, sql: String| cluster.exec(db, &sql);
    match op {
        Op::Create { pgq: true } => return cluster.create_pgq_db("m"),
        Op::Create { pgq: false } => return cluster.create_db("m"),
        Op::InstallPgq(n) => cluster.install_pgq(n),
        Op::DropPgq(n) => run(n, "drop extension pgq cascade".into()),
        Op::Drop(n) => run(
            "postgres",
            format!("drop database {} with (force)", ident(n)),
        ),
        Op::Rename(old, new) => rename(cluster, old, new),
        Op::AllowConnections(n, allow) => {
            run(
                "postgres",
                format!("alter database {} allow_connections {allow}", ident(n)),
            );
            // As an operator closing a database for maintenance: the sessions too.
            terminate(cluster, n);
        }
        Op::Template(n, t) => run(
            "postgres",
            format!("alter database {} is_template {t}", ident(n)),
        ),
        Op::CreateQueue(n) => run(n, "select pgq.create_queue('mq')".into()),
        Op::DropQueue(n) => run(n, "select pgq.drop_queue('mq', true)".into()),
        Op::PauseQueue(n) => run(
            n,
            "select pgq.set_queue_config('mq', 'ticker_paused', 'true')".into(),
        ),
        Op::Reload(list) => {
            let line = list
                .as_ref()
                .map(|l| format!("database_list = {}", l.join(", ")));
            watched.reload_to(
                cluster,
                &line.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
        Op::Sighup => watched.daemon.signal(Signal::SIGHUP),
        Op::Restart => cluster.restart_server("fast"),
    }
    String::new()
}

/// Ends every session in `db`.
fn terminate(cluster: &Cluster, db: &str) {
    cluster
        .connect("postgres")
        .execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
            &[&db],
        )
        .unwrap();
}

/// `alter database old rename to new`, which needs the database free of sessions:
/// pgqd's are ended first (it reconnects within a backoff, so try a few times).
pub fn rename(cluster: &Cluster, old: &str, new: &str) {
    let sql = format!("alter database {} rename to {}", ident(old), ident(new));
    let mut client = cluster.connect("postgres");
    for _ in 0..50 {
        terminate(cluster, old);
        if client.batch_execute(&sql).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{sql} kept failing");
}

/// `pgqd --status --json`, run on the daemon's config, lists the databases the model
/// serves, each in the role that matches its state.
fn status_matches(model: &Model, watched: &Watched) -> Option<String> {
    let out = pgqd()
        .args(["--status", "--json"])
        .arg(watched.daemon.config_path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let roles: BTreeMap<String, String> = (report.as_array()?.iter())
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("").into(),
                d["role"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = (model.served().into_iter())
        .map(|(n, s)| {
            (
                n,
                match s {
                    "ticking" => "primary",
                    "no_pgq" => "no pgq",
                    _ => "error",
                }
                .into(),
            )
        })
        .collect();
    (roles != expected).then(|| format!("--status shows {roles:?}, the model {expected:?}"))
}

/// The kind of operation that makes `kind` possible: a database to act on, a queue.
fn prerequisite(kind: usize) -> usize {
    match kind {
        8 | 9 => 7,
        _ => 0,
    }
}

/// A small, seedable generator (splitmix64): the same seed gives the same sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// The kinds of operation in a random order.
    fn deck(&mut self) -> Vec<usize> {
        let mut deck: Vec<usize> = (0..KINDS).collect();
        for i in (1..deck.len()).rev() {
            deck.swap(i, self.below(i + 1));
        }
        deck
    }
}

/// A failed sequence: its seed, the steps so far and why.
struct Failure {
    seed: u64,
    steps: Vec<String>,
    why: String,
    output: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sequence with seed {} failed: {}", self.seed, self.why)?;
        writeln!(f, "steps:\n  {}", self.steps.join("\n  "))?;
        writeln!(
            f,
            "rerun: LIFECYCLE_SEED={} LIFECYCLE_SEQUENCES=1",
            self.seed
        )?;
        write!(f, "pgqd output:\n{}", self.output)
    }
}

/// Runs one sequence of `steps` operations from `seed`; counts the kinds performed.
fn sequence(seed: u64, steps: usize, counts: &mut [usize; KINDS]) -> Result<(), Failure> {
    let mut rng = Rng(seed);
    let cluster = Cluster::start();
    let watched = Watched::start(&cluster, &[]);
    let mut model = Model::new();
    // Up first: a SIGHUP before pgqd has set its handlers would end it.
    watched.wait_for(&cluster, "the daemon up", |v| model.mismatch(v).is_none());
    let mut done = Vec::new();
    let mut deck = Vec::new();
    while done.len() < steps {
        if deck.is_empty() {
            deck = rng.deck();
        }
        let mut kind = deck.pop().unwrap_or(0);
        let op = loop {
            if let Some(op) = model.op(kind, &mut rng) {
                break op;
            }
            // Not possible now (no queue to pause, say): this kind comes again later,
            // and what makes it possible comes now.
            deck.insert(0, kind);
            kind = prerequisite(kind);
        };
        counts[kind] += 1;
        eprintln!("lifecycle model: step {}: {op:?}", done.len() + 1);
        let created = perform(&op, &cluster, &watched);
        model.apply(&op, &created);
        done.push(format!(
            "{op:?}{}",
            if created.is_empty() {
                String::new()
            } else {
                format!(" -> {created}")
            }
        ));
        let fail = |why: String| Failure {
            seed,
            steps: done.clone(),
            why,
            output: watched.daemon.output(),
        };
        if let Err(last) = watched.settle(&cluster, SETTLE, |v| model.mismatch(v).is_none()) {
            let why = model.mismatch(&last).unwrap_or_default();
            return Err(fail(format!("{why}; last view {last:#?}")));
        }
        if let Some(why) = status_matches(&model, &watched) {
            return Err(fail(why));
        }
    }
    let output = watched.daemon.output();
    match output
        .lines()
        .find(|l| l.contains("panicked") || l.contains("database task failed"))
    {
        Some(line) => Err(Failure {
            seed,
            steps: done,
            why: line.into(),
            output,
        }),
        None => Ok(()),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Random sequences of database lifecycle operations against a real cluster: after
/// every step, `/status`, `pgqd_databases`, `/healthz`, `/metrics`, the task count,
/// `pgqd_connections` against the server's sessions, `STATUS=` and `pgqd --status`
/// all agree with the model. Every kind of operation comes up in every run.
#[test]
fn database_set_follows_the_model() {
    let clock = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let first = env_number("LIFECYCLE_SEED", clock.as_secs() % 1_000_000);
    let sequences = env_number("LIFECYCLE_SEQUENCES", 5);
    let steps = env_number("LIFECYCLE_STEPS", 26) as usize;
    let mut counts = [0; KINDS];
    for seed in first..first + sequences {
        eprintln!("lifecycle model: sequence with seed {seed}, {steps} steps");
        if let Err(failure) = sequence(seed, steps, &mut counts) {
            panic!("{failure}");
        }
    }
    eprintln!("lifecycle model: {sequences} sequences, operations by kind {counts:?}");
    assert!(
        counts.iter().all(|n| *n > 0),
        "a kind never came up: {counts:?}"
    );
}
