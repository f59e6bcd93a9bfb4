//! What the phases of one database task share: where to connect, the live settings,
//! the counters, the bound on parallel connection attempts, the stop signal, and the
//! outage bookkeeping. Imports none of its sibling phases.

use std::sync::Arc;
use std::time::Duration;

use pgconninfo::Target;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::engine::Engines;
use crate::clock::Clocks;
use crate::config::Config;
use crate::jobs::Job;
use crate::jobs::watch::Look;
use crate::pg::{PgError, Session};
use crate::stats::{DbStats, REPEAT_LOG_INTERVAL, Repeat};

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
    Failed { job: Job, error: PgError },
}

impl End {
    /// `End::Failed` for `job`, or `Stopped` when the error is shutdown's; shaped
    /// for `map_err`.
    pub fn failed(job: Job) -> impl Fn(PgError) -> End {
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
    /// The database's stats entry: created with the task, removed when the task and
    /// everything it holds (sessions, second-connection work) has ended.
    pub stats: Arc<DbStats>,
    /// Asks the supervisor to list the databases now (this one may be gone).
    pub relist: Arc<Notify>,
    /// The supervisor's latest look for other tickers on the server.
    pub looks: watch::Receiver<Arc<Look>>,
    pub connect_slots: Arc<Semaphore>,
    /// The ticker clock the databases' ticks share.
    pub clocks: Clocks,
    /// The ticker engines quiet stretches are lent to (`db/engine.rs`).
    pub engines: Engines,
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
        let session = tokio::select! {
            result = attempt => result?,
            _ = self.shutdown.cancelled() => return Err(PgError::shutdown()),
        };
        self.stats.connections(1);
        let stats = self.stats.clone();
        Ok(session.on_drop(move || stats.connections(-1)))
    }

    /// Counts an error of `job` for the metrics and `/status`; says whether to log it
    /// (identical errors are logged at most once a minute).
    pub fn count_error(&self, job: Job, error: &PgError) -> Repeat {
        self.stats.error(job, error.sqlstate(), &error.to_string())
    }

    /// Counts an error of `job` and logs it with `log` (given the suffix that says how
    /// many identical lines were held back) unless an identical one was logged less
    /// than a minute ago.
    pub fn report(&self, job: Job, error: &PgError, log: impl FnOnce(&str)) {
        if let Some(repeated) = self.count_error(job, error).log_now() {
            log(&repeated);
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
/// discovery): one line when it starts, a reminder at most once a minute while it
/// lasts, one line when it ends, with the length counted from the first failure.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the outage started, and the job that noticed it: its start, reminders and
    /// end carry this label.
    since: Option<(Instant, Job)>,
    reminded: Option<Instant>,
    /// The server refused a job on a working connection (no permission): connecting
    /// again does not end the outage; the job working again does.
    refused: bool,
}

impl Outage {
    /// Logs the failure when it starts an outage (`what` says what failed: `connection
    /// lost`, `cannot connect`, ...; `hint` is added to that line); later ones of the
    /// same outage are DEBUG but for a reminder once a minute. `true` when this failure
    /// started the outage.
    pub fn begin(&mut self, job: Job, error: &PgError, what: &str, hint: &str) -> bool {
        let now = Instant::now();
        let Some((since, first)) = self.since else {
            self.since = Some((now, job));
            self.reminded = Some(now);
            self.refused = false;
            error!(
                job = %job,
                sqlstate = error.sqlstate(),
                "{what}: {error}{hint}; reconnecting"
            );
            return true;
        };
        if self
            .reminded
            .is_some_and(|at| now.duration_since(at) >= REPEAT_LOG_INTERVAL)
        {
            self.reminded = Some(now);
            error!(
                job = %first,
                sqlstate = error.sqlstate(),
                "still failing for {}: {error}",
                minutes(now.duration_since(since))
            );
        } else {
            debug!(
                job = %job,
                sqlstate = error.sqlstate(),
                "still unreachable: {error}"
            );
        }
        false
    }

    /// The outage is the server refusing a job on a working connection.
    pub fn refused(&mut self) {
        self.refused = self.since.is_some();
    }

    /// A connection works again: ends an outage of reaching the server, not a refusal
    /// (that one ends when the refused job works again, see [`Outage::end`]).
    pub fn connected(&mut self) {
        if !self.refused {
            self.end();
        }
    }

    /// Everything works again: ends the outage, if any, with its length, under the
    /// label of the job that noticed it.
    pub fn end(&mut self) {
        self.reminded = None;
        let refused = std::mem::take(&mut self.refused);
        if let Some((since, job)) = self.since.take() {
            let secs = since.elapsed().as_secs_f64();
            if refused {
                info!(
                    job = %job,
                    duration = format!("{secs:.1}"),
                    "{job} works again after {secs:.1} s"
                );
            } else {
                info!(
                    job = %job,
                    duration = format!("{secs:.1}"),
                    "connection restored after {secs:.1} s"
                );
            }
        }
    }
}

/// A duration as the reminder shows it: `45s`, `3m`, `2h5m`.
fn minutes(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        _ => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
    }
}
