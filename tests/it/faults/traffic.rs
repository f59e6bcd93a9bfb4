//! The rig's own connections: counted (so that the daemon's sessions can be told from
//! ours), reconnecting after a fault, and the producer and consumer of numbered events.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

use crate::harness::Cluster;

pub const QUEUE: &str = "q";
pub const CONSUMER: &str = "c";
/// The application_name of the rig's connections, so they are never taken for pgqd's.
pub const APP: &str = "pgqd-faults";

const INSERT: &str = "select pgq.insert_event($1, 'n', $2)";
const NEXT_BATCH: &str = "select pgq.next_batch($1, $2)";
const BATCH_EVENTS: &str = "select ev_data from pgq.get_batch_events($1)";
const FINISH_BATCH: &str = "select pgq.finish_batch($1)";
/// A pause between two events: about 50 events a second per database.
const PRODUCE_EVERY: Duration = Duration::from_millis(20);
/// A pause before trying again after a failed insert or connection.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Where the rig connects, and how many sessions it opened in one database.
#[derive(Clone)]
pub struct Target {
    dir: PathBuf,
    port: u16,
    pub db: String,
    pub opened: Arc<AtomicU32>,
}

impl Target {
    pub fn new(cluster: &Cluster, db: &str) -> Target {
        Target {
            dir: cluster.dir.clone(),
            port: cluster.port,
            db: db.to_string(),
            opened: Arc::default(),
        }
    }

    /// Connects as `postgres`, counting the session when it is made.
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        let client = postgres::Config::new()
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(&self.db)
            .application_name(APP)
            .connect_timeout(Duration::from_secs(5))
            .connect(NoTls)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(client)
    }

    pub fn sessions_opened(&self) -> i64 {
        i64::from(self.opened.load(Ordering::Relaxed))
    }
}

/// A connection of the rig's that reconnects on the next use after it broke.
pub struct Watch {
    pub target: Target,
    client: Option<Client>,
}

impl Watch {
    pub fn new(target: Target) -> Watch {
        Watch {
            target,
            client: None,
        }
    }

    /// The first row of `sql`, or `None` when the query or the connection failed.
    pub fn row(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Option<Row> {
        self.call(|client| client.query_opt(sql, params))
            .ok()
            .flatten()
    }

    /// Runs SQL statements, panicking with the error on failure.
    pub fn exec(&mut self, sql: &str) {
        if let Err(e) = self.call(|client| client.batch_execute(sql)) {
            panic!("{} in {}: {e:?}", sql, self.target.db);
        }
    }

    /// `f` on the kept connection; when that connection turns out broken (a fault
    /// ended it), once more on a new one.
    fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            let client = match self.client.as_mut().filter(|c| !c.is_closed()) {
                Some(client) => client,
                None => self.client.insert(self.target.connect()?),
            };
            match f(client) {
                Err(e) if e.as_db_error().is_none() => {
                    self.client = None;
                    if tries == 2 {
                        return Err(e);
                    }
                }
                result => return result,
            }
        }
    }
}

/// What a producer saw: the ids it saw committed, and the ids one of whose attempts
/// failed (such an attempt may have committed without our seeing it, so the id may
/// come twice).
#[derive(Default)]
pub struct Produced {
    pub committed: Vec<i64>,
    pub retried: BTreeSet<i64>,
}

/// A thread inserting events `1, 2, 3, ...` into [`QUEUE`], each until it commits.
pub struct Producer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Produced>,
}

impl Producer {
    pub fn start(target: Target) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || produce(&target, &flag));
        Producer { stop, thread }
    }

    pub fn stop(self) -> Produced {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("producer thread panicked")
    }
}

fn produce(target: &Target, stop: &AtomicBool) -> Produced {
    let mut produced = Produced::default();
    let mut client: Option<Client> = None;
    let mut next: i64 = 1;
    while !stop.load(Ordering::Relaxed) {
        let Some(session) = client.as_mut() else {
            client = target.connect().ok();
            if client.is_none() {
                std::thread::sleep(RETRY_AFTER);
            }
            continue;
        };
        match session.execute(INSERT, &[&QUEUE, &next.to_string()]) {
            Ok(_) => {
                produced.committed.push(next);
                next += 1;
                std::thread::sleep(PRODUCE_EVERY);
            }
            Err(_) => {
                produced.retried.insert(next);
                if session.is_closed() {
                    client = None;
                }
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
    produced
}

/// Reads batches of [`QUEUE`] as [`CONSUMER`] until every id of `expected` came (or
/// `deadline` passed) and no batch is left; returns every id read, repeats included.
pub fn consume(target: &Target, expected: &[i64], deadline: Duration) -> Vec<i64> {
    let mut client = target
        .connect()
        .unwrap_or_else(|e| panic!("consumer connect to {}: {e}", target.db));
    let missing: BTreeSet<i64> = expected.iter().copied().collect();
    let mut seen = Vec::new();
    let mut seen_set = BTreeSet::new();
    let start = Instant::now();
    loop {
        let batch: Option<i64> = client
            .query_one(NEXT_BATCH, &[&QUEUE, &CONSUMER])
            .unwrap_or_else(|e| panic!("next_batch in {}: {e}", target.db))
            .get(0);
        let Some(batch) = batch else {
            if missing.is_subset(&seen_set) || start.elapsed() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        for row in client.query(BATCH_EVENTS, &[&batch]).unwrap() {
            let data: String = row.get(0);
            let id: i64 = data.parse().expect("event data is a number");
            seen.push(id);
            seen_set.insert(id);
        }
        client.execute(FINISH_BATCH, &[&batch]).unwrap();
    }
}
