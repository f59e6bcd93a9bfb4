//! Every 100 ms, from the root namespace over the server's unix socket (no partition
//! reaches it): who holds the database's leader lock (`pg_locks`), and which instances
//! are ticking (a backend inside `pgq.ticker()`, or whose ticker call started within
//! two ticker periods: an active call lasts about a millisecond and would mostly slip
//! between samples).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use postgres::Client;

/// How often the sampler looks.
const EVERY: Duration = Duration::from_millis(100);

/// The application names of the leader lock's holders, and of the instances ticking.
/// The pattern is split so that this statement's own text does not contain the ticker
/// call: the instances' look for other tickers would report the sampler as one.
const SAMPLE: &str = "select
  array(select a.application_name from pg_locks l join pg_database d on d.oid = l.database join pg_namespace n on n.oid = l.objid join pg_stat_activity a on a.pid = l.pid where d.datname = current_catalog and n.nspname = 'pgq' and l.locktype = 'advisory' and l.classid = d.oid and l.objsubid = 2 and l.granted order by 1),
  array(select distinct application_name from pg_stat_activity where datname = current_catalog and query like 'select pgq.' || 'ticker()%' and (state = 'active' or query_start > clock_timestamp() - $1::text::interval) order by 1)";

/// One look.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: SystemTime,
    pub holders: Vec<String>,
    pub ticking: Vec<String>,
}

/// The sampling thread; stopped (and waited for) when dropped.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Samples over `client` (connected to the database), counting a ticker call as
    /// current for `recent`.
    pub fn start(mut client: Client, recent: Duration) -> Sampler {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (into, flag) = (Arc::clone(&samples), Arc::clone(&stop));
        let recent = format!("{} ms", recent.as_millis());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let row = client
                    .query_one(SAMPLE, &[&recent])
                    .unwrap_or_else(|e| panic!("sampler: {e}"));
                let sample = Sample {
                    at: SystemTime::now(),
                    holders: row.get(0),
                    ticking: row.get(1),
                };
                into.lock().unwrap().push(sample);
                std::thread::sleep(EVERY);
            }
        });
        Sampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Stops sampling; every sample taken.
    pub fn stop(mut self) -> Vec<Sample> {
        self.halt();
        self.samples()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the sampler thread panicked");
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The samples that saw more than one instance ticking or holding the lock.
pub fn crowded(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.ticking.len() > 1 || s.holders.len() > 1)
        .collect()
}

/// The changes of the lock's holder: (when first seen, holder), `None` for no holder.
pub fn holder_changes(samples: &[Sample]) -> Vec<(SystemTime, Option<String>)> {
    let mut changes: Vec<(SystemTime, Option<String>)> = Vec::new();
    for sample in samples {
        let holder = sample.holders.first().cloned();
        if changes.last().map(|(_, h)| h) != Some(&holder) {
            changes.push((sample.at, holder));
        }
    }
    changes
}
