//! What the phases of one database task share: where to connect, the live settings,
//! the counters, the bound on parallel connection attempts, the stop signal, and the
//! outage bookkeeping. Imports none of its sibling phases.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::config::Config;
use crate::conninfo::Target;
use crate::pg::{PgError, Session};
use crate::stats::Stats;

/// How a phase of a database task ended; `db/mod.rs` alone decides what follows.
#[derive(Debug)]
pub enum End {
    /// Shutdown (or the database was unregistered).
    Stopped,
    /// Connected but pgq is missing or unusable: look again after check_period.
    NoPgq,
    /// Start over with a probe on a new connection (pgq changed, promotion).
    Reprobe,
    /// Another instance holds the leader lock: follow it on the phase's session.
    Follow,
    /// A call of `job` failed; the error says whether to reconnect quickly or wait.
    Failed { job: &'static str, error: PgError },
}

impl End {
    /// `End::Failed` for `job`, or `Stopped` when the error is shutdown's; shaped
    /// for `map_err`.
    pub fn failed(job: &'static str) -> impl Fn(PgError) -> End {
        move |error| {
            if error.is_shutdown() {
                End::Stopped
            } else {
                End::Failed { job, error }
            }
        }
    }
}

/// Everything a database's jobs share.
#[derive(Clone)]
pub struct DbContext {
    pub name: String,
    pub target: Target,
    pub settings: watch::Receiver<Arc<Config>>,
    pub stats: Arc<Stats>,
    pub connect_slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
}

impl DbContext {
    pub fn config(&self) -> Arc<Config> {
        self.settings.borrow().clone()
    }

    /// Opens a connection, waiting for a free connect slot first so that a start with
    /// a thousand databases does not storm the server.
    pub async fn connect(&self) -> Result<Session, PgError> {
        // Boxed: connecting (host list, TLS, start-up) is the largest state of every
        // task's future, and it exists only for a moment; inline, every idle task
        // would carry its kilobytes.
        let attempt = Box::pin(async {
            let _slot = self.connect_slots.acquire().await;
            Session::open(&self.target).await
        });
        tokio::select! {
            result = attempt => result,
            _ = self.shutdown.cancelled() => Err(PgError::shutdown()),
        }
    }

    /// Sleeps unless shutdown comes first; `false` means stop.
    pub async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// A run of consecutive failures to reach a database (or the initial database, for
/// discovery): one line when it starts, one when it ends, with the length counted
/// from the first failure.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Logs the failure when it starts an outage; later ones of the same outage are
    /// DEBUG.
    pub fn begin(&mut self, job: &str, error: &PgError) {
        if self.since.is_some() {
            debug!(
                job,
                sqlstate = error.sqlstate(),
                "still unreachable: {error}"
            );
            return;
        }
        self.since = Some(Instant::now());
        error!(
            job,
            sqlstate = error.sqlstate(),
            "connection lost: {error}; reconnecting"
        );
    }

    /// A connection works again: ends the outage, if any, with its length.
    pub fn end(&mut self, job: &str) {
        if let Some(since) = self.since.take() {
            let secs = since.elapsed().as_secs_f64();
            info!(
                job,
                duration = format!("{secs:.1}"),
                "connection restored after {secs:.1} s"
            );
        }
    }

    pub fn is_open(&self) -> bool {
        self.since.is_some()
    }
}
