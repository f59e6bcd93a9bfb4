//! What runs through the failovers: a producer and a consumer on whichever node is
//! the primary (a multi-host connection with `target_session_attrs=read-write`), and
//! a sampler counting, on every node, the instances that tick and the lock holders.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::config::TargetSessionAttrs;

use super::cluster::connect;
use crate::ha::{lock_holder, ticking_now};

/// The queue and consumer the load uses.
pub const QUEUE: &str = "q";
pub const CONSUMER: &str = "c";

/// What the threads saw, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// Event numbers whose insert committed.
    pub committed: BTreeSet<i64>,
    /// Inserts whose outcome is unknown (the connection broke during the call).
    pub uncertain: usize,
    /// Event numbers received in finished batches.
    pub consumed: BTreeSet<i64>,
    /// Events received more than once (redelivered after a failover).
    pub duplicates: usize,
    pub samples: usize,
    /// The most instances seen ticking the database at one sample, over all nodes.
    pub most_ticking: i64,
    /// The most leader lock holders seen at one sample, over all nodes.
    pub most_holders: i64,
}

/// The running threads.
pub struct Load {
    pub seen: Arc<Mutex<Seen>>,
    producing: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(ports: Vec<u16>, db: &str, recent: Duration) -> Load {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let producing = Arc::new(AtomicBool::new(true));
        let running = Arc::new(AtomicBool::new(true));
        let threads = vec![
            spawn_producer(&ports, db, &seen, &producing),
            spawn_consumer(&ports, db, &seen, &running),
            spawn_sampler(&ports, db, recent, &seen, &running),
        ];
        Load {
            seen,
            producing,
            running,
            threads,
        }
    }

    pub fn stop_producing(&self) {
        self.producing.store(false, Ordering::Relaxed);
    }

    /// Every committed event consumed.
    pub fn drained(&self) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.committed.is_subset(&seen.consumed)
    }

    pub fn stop(self) -> Arc<Mutex<Seen>> {
        self.producing.store(false, Ordering::Relaxed);
        self.running.store(false, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        self.seen
    }
}

/// A connection to the primary, whichever node it is.
fn primary(ports: &[u16], db: &str) -> Option<postgres::Client> {
    let mut config = postgres::Config::new();
    for port in ports {
        config.host("127.0.0.1").port(*port);
    }
    config
        .user("postgres")
        .dbname(db)
        .connect_timeout(Duration::from_secs(2))
        .target_session_attrs(TargetSessionAttrs::ReadWrite)
        .connect(postgres::NoTls)
        .ok()
}

/// Inserts numbered events, one every 20 ms, reconnecting after a failure.
fn spawn_producer(
    ports: &[u16],
    db: &str,
    seen: &Arc<Mutex<Seen>>,
    producing: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (ports, db, seen, producing) = (
        ports.to_vec(),
        db.to_string(),
        seen.clone(),
        producing.clone(),
    );
    std::thread::spawn(move || {
        let mut client = None;
        let mut next = 0i64;
        while producing.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            if client.is_none() {
                client = primary(&ports, &db);
            }
            let Some(c) = client.as_mut() else {
                continue;
            };
            next += 1;
            let data = next.to_string();
            match c.execute("select pgq.insert_event($1, 'n', $2)", &[&QUEUE, &data]) {
                Ok(_) => {
                    seen.lock().unwrap().committed.insert(next);
                }
                Err(_) => {
                    seen.lock().unwrap().uncertain += 1;
                    client = None;
                }
            }
        }
    })
}

/// Takes batches as a pgq consumer does, each in one transaction with its
/// finish_batch; a batch counts as received only when that transaction commits.
fn spawn_consumer(
    ports: &[u16],
    db: &str,
    seen: &Arc<Mutex<Seen>>,
    running: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (ports, db, seen, running) = (
        ports.to_vec(),
        db.to_string(),
        seen.clone(),
        running.clone(),
    );
    std::thread::spawn(move || {
        let mut client = None;
        while running.load(Ordering::Relaxed) {
            if client.is_none() {
                client = primary(&ports, &db);
            }
            let Some(c) = client.as_mut() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            match take_batch(c) {
                Ok(Some(events)) => {
                    let mut seen = seen.lock().unwrap();
                    for event in events {
                        if !seen.consumed.insert(event) {
                            seen.duplicates += 1;
                        }
                    }
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => client = None,
            }
        }
    })
}

fn take_batch(client: &mut postgres::Client) -> Result<Option<Vec<i64>>, postgres::Error> {
    let mut tx = client.transaction()?;
    let batch: Option<i64> = tx
        .query_one("select pgq.next_batch($1, $2)", &[&QUEUE, &CONSUMER])?
        .get(0);
    let Some(batch) = batch else {
        return Ok(None);
    };
    let rows = tx.query("select ev_data from pgq.get_batch_events($1)", &[&batch])?;
    let events = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0)?.parse().ok())
        .collect();
    tx.query_one("select pgq.finish_batch($1)", &[&batch])?;
    tx.commit()?;
    Ok(Some(events))
}

/// Every 100 ms, on every node: the instances whose ticker call is recent, and the
/// holders of the leader lock, summed over the nodes.
fn spawn_sampler(
    ports: &[u16],
    db: &str,
    recent: Duration,
    seen: &Arc<Mutex<Seen>>,
    running: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (ports, db, seen, running) = (
        ports.to_vec(),
        db.to_string(),
        seen.clone(),
        running.clone(),
    );
    std::thread::spawn(move || {
        let mut clients: Vec<Option<postgres::Client>> = ports.iter().map(|_| None).collect();
        while running.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let (mut ticking, mut holders) = (0, 0);
            for (port, client) in ports.iter().zip(clients.iter_mut()) {
                if client.is_none() {
                    *client = connect(*port, &db).ok();
                }
                let Some(c) = client.as_mut() else { continue };
                match sample(c, &db, recent) {
                    Some((t, h)) => {
                        ticking += t;
                        holders += h;
                    }
                    None => *client = None,
                }
            }
            let mut seen = seen.lock().unwrap();
            seen.samples += 1;
            seen.most_ticking = seen.most_ticking.max(ticking);
            seen.most_holders = seen.most_holders.max(holders);
        }
    })
}

/// (instances ticking, lock holders) on one node; `None` when the node is unreachable.
fn sample(client: &mut postgres::Client, db: &str, recent: Duration) -> Option<(i64, i64)> {
    let ticking = ticking_now(client, db, recent).ok()?;
    let holders = i64::from(lock_holder(client).ok()?.is_some());
    Some((ticking, holders))
}
