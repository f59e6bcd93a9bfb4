//! Exactly-once delivery through whatever the tickers do: a producer committing
//! numbered events one by one, a consumer registered before the first of them that
//! reads every batch (`pgq.next_batch`, `pgq.get_batch_events`, `pgq.finish_batch`) and
//! records every event, and the check that each committed event came exactly once.
//!
//! Both connect over the cluster's unix socket as `postgres`, with application names of
//! their own, so they are never taken for a ticker and no partition reaches them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use crate::harness::Cluster;

const REGISTER: &str = "select pgq.register_consumer($1, $2)";
const INSERT: &str = "select pgq.insert_event($1, 'n', $2)";
const NEXT_BATCH: &str = "select pgq.next_batch($1, $2)";
const BATCH_EVENTS: &str = "select ev_data from pgq.get_batch_events($1)";
const FINISH_BATCH: &str = "select pgq.finish_batch($1)";
/// A pause between two events: about 50 events a second.
const PRODUCE_EVERY: Duration = Duration::from_millis(20);
/// A pause after an empty `next_batch`.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The consumer's name in the queue.
const CONSUMER: &str = "exactly_once";

/// A connection to `db` over the cluster's socket, named `app`.
fn connect(cluster: &Cluster, db: &str, app: &str) -> Client {
    postgres::Config::new()
        .host_path(&cluster.dir)
        .port(cluster.port)
        .user("postgres")
        .dbname(db)
        .application_name(app)
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect to {db} as {app}: {e}"))
}

/// A thread committing events `1, 2, 3, ...` into a queue, one per transaction;
/// stopped (and waited for) when dropped.
pub struct Producer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<i64>>>,
}

impl Producer {
    pub fn start(cluster: &Cluster, db: &str, queue: &str) -> Producer {
        let mut client = connect(cluster, db, "pgqd-it-producer");
        let (queue, stop) = (queue.to_string(), Arc::new(AtomicBool::new(false)));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut committed = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let id = committed.len() as i64 + 1;
                // The server is never faulted here: a failed insert is the test's own
                // failure, not an event to account for.
                client
                    .execute(INSERT, &[&queue, &id.to_string()])
                    .unwrap_or_else(|e| panic!("producer: insert of event {id}: {e}"));
                committed.push(id);
                std::thread::sleep(PRODUCE_EVERY);
            }
            committed
        });
        Producer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops producing; the ids committed, in order.
    pub fn stop(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().unwrap();
        thread.join().expect("the producer thread panicked")
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A consumer registered on a queue, reading every batch on a thread of its own;
/// stopped (and waited for) when dropped.
pub struct Consumer {
    seen: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Consumer {
    /// Registers on `queue` (so every event committed from now on is delivered to it)
    /// and starts reading.
    pub fn start(cluster: &Cluster, db: &str, queue: &str) -> Consumer {
        let mut client = connect(cluster, db, "pgqd-it-consumer");
        client
            .query_one(REGISTER, &[&queue, &CONSUMER])
            .unwrap_or_else(|e| panic!("register the consumer on {queue}: {e}"));
        let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (into, flag, queue) = (Arc::clone(&seen), stop.clone(), queue.to_string());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match read_batch(&mut client, &queue) {
                    Some(events) => into.lock().unwrap().extend(events),
                    None => std::thread::sleep(POLL_EVERY),
                }
            }
        });
        Consumer {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Reads on until every id of `produced` came or `deadline` passed (the tickers
    /// must tick after the last event), then stops; every id read, repeats included.
    pub fn drain(mut self, produced: &[i64], deadline: Duration) -> Vec<i64> {
        let start = Instant::now();
        while start.elapsed() < deadline && !self.has_all(produced) {
            std::thread::sleep(POLL_EVERY);
        }
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().unwrap();
        thread.join().expect("the consumer thread panicked");
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn has_all(&self, produced: &[i64]) -> bool {
        let seen = self.seen.lock().unwrap();
        let seen: std::collections::BTreeSet<_> = seen.iter().collect();
        produced.iter().all(|id| seen.contains(id))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The events of the next batch, finished; `None` when no batch is ready.
fn read_batch(client: &mut Client, queue: &str) -> Option<Vec<i64>> {
    let batch: Option<i64> = client
        .query_one(NEXT_BATCH, &[&queue, &CONSUMER])
        .unwrap_or_else(|e| panic!("consumer: next_batch: {e}"))
        .get(0);
    let batch = batch?;
    let rows = client
        .query(BATCH_EVENTS, &[&batch])
        .unwrap_or_else(|e| panic!("consumer: get_batch_events({batch}): {e}"));
    let events = rows
        .iter()
        .map(|row| {
            let data: String = row.get(0);
            data.parse().expect("event data is a number")
        })
        .collect();
    client
        .query_one(FINISH_BATCH, &[&batch])
        .unwrap_or_else(|e| panic!("consumer: finish_batch({batch}): {e}"));
    Some(events)
}

/// `Ok` with a one-line summary when each id of `produced` is in `consumed` exactly
/// once and nothing else is; otherwise what went wrong (the first few ids of each).
pub fn exactly_once(produced: &[i64], consumed: &[i64]) -> Result<String, String> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for id in consumed {
        *counts.entry(*id).or_default() += 1;
    }
    let first = |ids: Vec<i64>| -> String {
        let shown: Vec<String> = ids.iter().take(10).map(i64::to_string).collect();
        format!(
            "{} ({}{})",
            ids.len(),
            shown.join(", "),
            if ids.len() > 10 { ", ..." } else { "" }
        )
    };
    let missing: Vec<i64> = (produced.iter())
        .filter(|id| !counts.contains_key(id))
        .copied()
        .collect();
    let twice: Vec<i64> = (counts.iter())
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let known: std::collections::BTreeSet<_> = produced.iter().collect();
    let unknown: Vec<i64> = (counts.keys())
        .filter(|id| !known.contains(id))
        .copied()
        .collect();
    if missing.is_empty() && twice.is_empty() && unknown.is_empty() {
        return Ok(format!(
            "{} events committed, each delivered exactly once",
            produced.len()
        ));
    }
    Err(format!(
        "of {} events committed: missing {}, delivered more than once {}, never committed {}",
        produced.len(),
        first(missing),
        first(twice),
        first(unknown)
    ))
}

#[cfg(test)]
mod tests {
    use super::exactly_once;

    /// The check passes on each id once, and names a missing, a repeated and an
    /// unknown id.
    #[test]
    fn the_check_tells_each_failure() {
        assert!(exactly_once(&[1, 2, 3], &[3, 1, 2]).is_ok());
        let err = exactly_once(&[1, 2, 3], &[1, 1, 3, 9]).unwrap_err();
        assert!(err.contains("missing 1 (2)"), "{err}");
        assert!(err.contains("more than once 1 (1)"), "{err}");
        assert!(err.contains("never committed 1 (9)"), "{err}");
    }
}
