//! After a fault: how long ticking took to resume, what the consumer read back, how
//! many lines and sessions the fault cost; printed as one line, then asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use crate::engine::{check, lines_with};
use crate::harness::DEADLINE;

use super::rig::{Bounds, Rig, Window};
use super::traffic::consume;
use super::{COMPARED_WAIT, compared_binary};

/// Seconds from `$1` to the first tick after it (NULL while there is none).
const FIRST_TICK_AFTER: &str = "select extract(epoch from min(tick_time) - $1::timestamptz)::float8 from pgq.tick where tick_time > $1";
/// How many of a fault's ERROR and WARNING lines are printed with its measurements.
const SHOWN_LINES: usize = 12;

/// What one fault cost, per database where it applies.
struct Measured {
    name: String,
    /// Seconds from the fault's end to the first tick, per database.
    resumed: Vec<Option<f64>>,
    /// The longest of `resumed` among the databases the fault touched.
    resume: Option<f64>,
    lost: Lost,
    sessions: Vec<i64>,
    /// ERROR and WARNING lines naming each database, and in all.
    complaints: Vec<usize>,
    all_complaints: usize,
}

impl Rig {
    /// Measures the fault, prints the measurements as one line (with the fault's
    /// ERROR and WARNING lines), and asserts them against `bounds`.
    pub fn finish(mut self, bounds: Bounds) {
        let window = self.window.take().expect("finish() after begin()");
        let measured = self.measure(&window, &bounds);
        let output = self.daemon.output();
        measured.print();
        for line in complaint_lines(&output[window.log_from..], &self.dbs).take(SHOWN_LINES) {
            eprintln!("    {line}");
        }
        let running = self.daemon_running();
        check(&self.daemon, running, "pgqd exited");
        measured.check(&self, &bounds);
    }

    fn measure(&mut self, window: &Window, bounds: &Bounds) -> Measured {
        let ended = window.ended.expect("finish() after end()");
        let wait = compared_binary().map_or(bounds.resume, |_| COMPARED_WAIT);
        let resumed = self.resumed(ended, wait);
        let lost = self.events_lost();
        let sessions = self.sessions_since(window);
        let output = self.daemon.output();
        let output = &output[window.log_from..];
        Measured {
            name: window.name.clone(),
            resume: resume_of(&resumed, &window.faulted),
            resumed,
            lost,
            sessions,
            complaints: self.dbs.iter().map(|db| complaints(output, db)).collect(),
            all_complaints: lines_with(output, &[" ERROR "]) + lines_with(output, &[" WARNING "]),
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

    /// New sessions per database since the window began, less the rig's own and the
    /// maintenance rounds', read once the count has settled (backends report their
    /// statistics about once a second).
    fn sessions_since(&mut self, window: &Window) -> Vec<i64> {
        let read =
            |rig: &mut Rig| -> Vec<i64> { (0..rig.dbs.len()).map(|i| rig.churn(i)).collect() };
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

impl Measured {
    fn print(&self) {
        eprintln!(
            "fault {} | resume {} | error lines {} ({} in all) | events lost {} of {} | sessions {}",
            self.name,
            self.resume.map_or("none".into(), |s| format!("{s:.2} s")),
            join(&self.complaints),
            self.all_complaints,
            self.lost.lost,
            self.lost.committed,
            join(&self.sessions),
        );
    }

    fn check(&self, rig: &Rig, bounds: &Bounds) {
        let daemon = &rig.daemon;
        for (db, resumed) in rig.dbs.iter().zip(&self.resumed) {
            let within = resumed.is_some_and(|s| s <= bounds.resume.as_secs_f64());
            check(
                daemon,
                within,
                &format!("{db} ticked again after {resumed:?} s"),
            );
        }
        let Lost {
            lost, unexpected, ..
        } = self.lost;
        check(daemon, lost == 0, &format!("{lost} events lost"));
        let what = format!("{unexpected} events read that were not produced, or read twice");
        check(daemon, unexpected == 0, &what);
        for (i, db) in rig.dbs.iter().enumerate() {
            let (lines, sessions) = (self.complaints[i], self.sessions[i]);
            let what = format!("{lines} ERROR/WARNING lines for {db}");
            check(daemon, lines <= bounds.complaints, &what);
            let what = format!("{sessions} new sessions in {db}");
            check(daemon, sessions <= bounds.sessions, &what);
        }
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

/// The ERROR and WARNING lines about any of `dbs`.
fn complaint_lines<'a>(output: &'a str, dbs: &'a [String]) -> impl Iterator<Item = &'a str> {
    output.lines().filter(|line| {
        (line.contains(" ERROR ") || line.contains(" WARNING "))
            && dbs.iter().any(|db| line.contains(&format!("[{db}]: ")))
    })
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
