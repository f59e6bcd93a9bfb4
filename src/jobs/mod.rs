//! One call or round of each job a database runs: ticker, retry, maintenance, queue
//! statistics, with their SQL. The loops that schedule them live in `db/`. [`Job`]
//! names every job and phase, as logs, error counters and metric labels spell it.

pub mod maint;
pub mod queue_stats;
pub mod retry;
pub mod ticker;
pub mod watch;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The per-call limits and the shutdown token a job turn runs under.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    pub timeout: Duration,
    pub shutdown: &'a CancellationToken,
}

/// What the daemon was doing when something happened: a job of `jobs/` or a phase of
/// a database task (probe, leader) or of the supervisor (discovery). Its string is the
/// `job` field of log lines, the `task` label of `pgqd_errors` and `/status`'s
/// `last_error.job`.
///
/// Declared in the order of the strings, so that maps keyed by it (the error
/// counters) list them as they always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    Discovery,
    Leader,
    Maint,
    Probe,
    QueueStats,
    Retry,
    Ticker,
    /// The look for another client ticking the database (see `jobs::watch`).
    Watch,
}

impl Job {
    /// The name in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Discovery => "discovery",
            Job::Leader => "leader",
            Job::Maint => "maint",
            Job::Probe => "probe",
            Job::QueueStats => "queue_stats",
            Job::Retry => "retry",
            Job::Ticker => "ticker",
            Job::Watch => "watch",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Job;

    /// The declaration order is the order of the strings (maps keyed by a job list
    /// them in that order, as metrics did when the keys were strings).
    #[test]
    fn jobs_sort_as_their_names() {
        let jobs = [
            Job::Discovery,
            Job::Leader,
            Job::Maint,
            Job::Probe,
            Job::QueueStats,
            Job::Retry,
            Job::Ticker,
            Job::Watch,
        ];
        assert!(jobs.windows(2).all(|w| w[0] < w[1]));
        assert!(jobs.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    }
}
