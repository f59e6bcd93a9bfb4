//! One call or round of each job a database runs: ticker, retry, maintenance, queue
//! statistics, with their SQL. The loops that schedule them live in `db/`.

pub mod maint;
pub mod queue_stats;
pub mod retry;
pub mod ticker;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The per-call limits and the shutdown token a job turn runs under.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    pub timeout: Duration,
    pub shutdown: &'a CancellationToken,
}
