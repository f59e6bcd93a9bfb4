//! One database: probe it for pgq, then tick on a connection of its own while
//! housekeeping (retry and maintenance) runs concurrently on a second one, so a slow
//! VACUUM never delays a tick. The task's state is explicit ([`State`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use crate::config::Config;
use crate::conninfo::Target;
use crate::housekeeping::Housekeeping;
use crate::pg::{PgError, Session};
use crate::schedule::Backoff;
use crate::stats::{DbState, Stats};
use crate::ticking::Ticking;

const HAS_PGQ: &str = "select 1 from pg_catalog.pg_namespace where nspname='pgq'";
const PGQ_VERSION: &str = "select pgq.version()";
const HAS_TICKER: &str = "select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace where n.nspname = 'pgq' and p.proname = 'ticker'";
const IN_RECOVERY: &str = "select pg_catalog.pg_is_in_recovery()";
/// Timeout for the probe queries, which are cheap catalog lookups.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a standby is asked whether it has been promoted.
const PROMOTION_POLL: Duration = Duration::from_secs(1);

/// What the database task does next; each state owns what it needs.
pub(crate) enum State {
    Probing,
    NoPgq,
    Standby(Session),
    Ticking(Session),
    BackingOff(Duration),
    Stopped,
}

impl State {
    fn kind(&self) -> DbState {
        match self {
            State::Probing | State::Stopped => DbState::Probing,
            State::NoPgq => DbState::NoPgq,
            State::Standby(_) => DbState::Standby,
            State::Ticking(_) => DbState::Ticking,
            State::BackingOff(_) => DbState::BackingOff,
        }
    }
}

/// Everything a database's jobs share: where to connect, the live settings, the
/// counters, the bound on parallel connection attempts, and the stop signal.
#[derive(Clone)]
pub struct DbContext {
    pub name: String,
    pub target: Target,
    pub settings: watch::Receiver<Arc<Config>>,
    pub stats: Arc<Stats>,
    pub connect_slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    /// Shared by the ticker and housekeeping, so an outage of the server is one line
    /// when it starts and one when it ends, whichever connection notices it.
    pub outage: Arc<Mutex<Outage>>,
}

impl DbContext {
    pub fn config(&self) -> Arc<Config> {
        self.settings.borrow().clone()
    }

    /// Opens a connection, waiting for a free connect slot first so that a start with
    /// a thousand databases does not storm the server. `None` on shutdown.
    pub async fn connect(&self) -> Option<Result<Session, PgError>> {
        // Boxed: connecting (host list, TLS, start-up) is the largest state of every
        // task's future, and it exists only for a moment; inline, every idle task
        // would carry its kilobytes.
        let attempt = Box::pin(async {
            let _slot = self.connect_slots.acquire().await;
            Session::open(&self.target).await
        });
        tokio::select! {
            result = attempt => Some(result),
            _ = self.shutdown.cancelled() => None,
        }
    }

    /// Sleeps unless shutdown comes first; `false` means stop.
    pub async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// Logs a failure to reach the database. Lost connections are logged once per
    /// outage (see [`Outage`]); refusals (no such database, bad password) every time,
    /// which is once per check_period.
    pub fn report(&self, job: &str, error: &PgError) {
        if error.is_refusal() {
            let hint = if self.name.contains('#') {
                "; the name contains '#': pgqd.ini has no inline comments, so database_list may hold a comment"
            } else {
                ""
            };
            error!(
                job,
                sqlstate = error.sqlstate(),
                "cannot connect: {error}{hint}"
            );
        } else {
            self.lost(job, error);
        }
    }

    /// The connection is lost: logged when this starts an outage.
    pub fn lost(&self, job: &str, error: &PgError) {
        self.outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .begin(job, error);
    }

    /// A connection works: ends the outage, if any, with its length.
    pub fn reachable(&self, job: &str) {
        self.outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .end(job);
    }
}

/// A run of consecutive failures: one line when it starts, one when it ends.
#[derive(Default)]
pub struct Outage {
    since: Option<tokio::time::Instant>,
}

impl Outage {
    pub fn begin(&mut self, job: &str, error: &PgError) {
        if self.since.is_none() {
            self.since = Some(tokio::time::Instant::now());
            error!(
                job,
                sqlstate = error.sqlstate(),
                "connection lost: {error}; reconnecting"
            );
        } else {
            debug!(
                job,
                sqlstate = error.sqlstate(),
                "still unreachable: {error}"
            );
        }
    }

    pub fn end(&mut self, job: &str) {
        if let Some(since) = self.since.take() {
            info!(
                job,
                duration = format!("{:.1}", since.elapsed().as_secs_f64()),
                "connection restored after {:.1} s",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// The long-running task of one database.
pub struct DbTask {
    pub(crate) ctx: DbContext,
    backoff: Backoff,
}

impl DbTask {
    pub fn new(ctx: DbContext) -> DbTask {
        DbTask {
            ctx,
            backoff: Backoff::new(),
        }
    }

    /// Runs until the shutdown token (the supervisor's child token) is cancelled.
    pub async fn run(mut self) {
        let mut state = State::Probing;
        loop {
            self.ctx.stats.set_state(&self.ctx.name, state.kind());
            // Each phase's future is boxed, so that an idle database task holds the
            // future of the phase it is in, not one the size of the largest phase.
            state = match state {
                State::Probing => Box::pin(self.probe()).await,
                State::NoPgq => self.idle(self.ctx.config().check_period).await,
                State::Standby(session) => Box::pin(self.wait_for_promotion(session)).await,
                State::Ticking(session) => Box::pin(self.tick(session)).await,
                State::BackingOff(delay) => self.idle(delay).await,
                State::Stopped => return,
            };
        }
    }

    async fn idle(&self, delay: Duration) -> State {
        if self.ctx.pause(delay).await {
            State::Probing
        } else {
            State::Stopped
        }
    }

    /// Connects and checks for pgq, as pgqd 3.5 does, plus a hot-standby check.
    async fn probe(&mut self) -> State {
        let session = match self.ctx.connect().await {
            None => return State::Stopped,
            Some(Ok(session)) => session,
            Some(Err(e)) => return self.failed("ticker", e),
        };
        match self.check_pgq(&session).await {
            Ok(Some(state)) => state,
            Ok(None) => match self.in_recovery(&session).await {
                Ok(true) => {
                    info!("server is a hot standby: waiting for promotion");
                    State::Standby(session)
                }
                Ok(false) => State::Ticking(session),
                Err(e) => self.failed("ticker", e),
            },
            Err(e) => self.failed("ticker", e),
        }
    }

    /// `Some(NoPgq)` when the database has no usable pgq, `None` when it can tick.
    async fn check_pgq(&mut self, session: &Session) -> Result<Option<State>, PgError> {
        let shutdown = &self.ctx.shutdown;
        self.ctx.reachable("ticker");
        self.backoff.reset();
        if session
            .query(HAS_PGQ, &[], PROBE_TIMEOUT, shutdown)
            .await?
            .is_empty()
        {
            debug!("no pgq schema; checking again in check_period");
            return Ok(Some(State::NoPgq));
        }
        let rows = session
            .query(PGQ_VERSION, &[], PROBE_TIMEOUT, shutdown)
            .await?;
        let version: Option<String> = rows.first().and_then(|r| r.try_get(0).ok()).flatten();
        let Some(version) = version else {
            return self.check_unversioned(session).await;
        };
        if !version_ok(&version) {
            warn!("bad pgq version, ignoring: {version}");
            return Ok(Some(State::NoPgq));
        }
        info!("pgq version ok: {version}");
        Ok(None)
    }

    /// pgq installed without the extension mechanism can answer NULL from
    /// pgq.version(): accept it when pgq.ticker() is there (pgqd 3.5 rejects it).
    async fn check_unversioned(&self, session: &Session) -> Result<Option<State>, PgError> {
        let rows = session
            .query(HAS_TICKER, &[], PROBE_TIMEOUT, &self.ctx.shutdown)
            .await?;
        if rows.is_empty() {
            warn!("bad pgq version, ignoring: pgq.version() is NULL and pgq.ticker() is missing");
            return Ok(Some(State::NoPgq));
        }
        info!("pgq version ok: unknown (pgq.version() is NULL, pgq.ticker() exists)");
        Ok(None)
    }

    async fn in_recovery(&self, session: &Session) -> Result<bool, PgError> {
        let rows = session
            .query(IN_RECOVERY, &[], PROBE_TIMEOUT, &self.ctx.shutdown)
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(false))
    }

    /// On a hot standby pgq.ticker() would fail every second; pgqd 3.5 logs each
    /// failure. We wait quietly and start as soon as the server is promoted.
    async fn wait_for_promotion(&mut self, session: Session) -> State {
        loop {
            if !self.ctx.pause(PROMOTION_POLL).await {
                return State::Stopped;
            }
            match self.in_recovery(&session).await {
                Ok(true) => continue,
                Ok(false) => {
                    info!("server promoted: starting the ticker");
                    return State::Probing;
                }
                Err(e) => return self.failed("ticker", e),
            }
        }
    }

    /// The next state after an error: fast reconnect for a lost connection, a wait of
    /// check_period for a refusal or an unexpected error.
    pub(crate) fn failed(&mut self, job: &str, error: PgError) -> State {
        if matches!(error, PgError::Shutdown) {
            return State::Stopped;
        }
        if let PgError::Timeout(_) = error {
            warn!(job, "probe timed out: {error}; reconnecting");
            return State::BackingOff(self.backoff.next_delay());
        }
        self.ctx.report(job, &error);
        if error.is_connection_lost() {
            return State::BackingOff(self.backoff.next_delay());
        }
        if !error.is_refusal() {
            error!(job, sqlstate = error.sqlstate(), "probe failed: {error}");
        }
        State::BackingOff(self.ctx.config().check_period)
    }

    /// Ticks at a fixed rate until the connection is lost, pgq disappears or shutdown;
    /// housekeeping runs alongside for as long as this lasts.
    async fn tick(&mut self, session: Session) -> State {
        let housekeeping_stop = self.ctx.shutdown.child_token();
        let housekeeping = Housekeeping::new(DbContext {
            shutdown: housekeeping_stop.clone(),
            ..self.ctx.clone()
        });
        let handle = tokio::spawn(housekeeping.run().in_current_span());
        let next = Ticking::new(self, session).run().await;
        housekeeping_stop.cancel();
        if let Err(e) = handle.await {
            error!(
                job = "housekeeping",
                "housekeeping task ended abnormally: {e}"
            );
        }
        next
    }
}

/// pgqd 3.5 rejects a version whose first character is below '3'; comparing the
/// major number instead keeps a future "10.0" working.
fn version_ok(version: &str) -> bool {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse::<u32>().ok());
    major.is_some_and(|m| m >= 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pgq version check compares the major number.
    #[test]
    fn pgq_versions() {
        assert!(version_ok("3.5"));
        assert!(version_ok("3.2.6"));
        assert!(version_ok("10.0"));
        assert!(!version_ok("2.1.8"));
        assert!(!version_ok(""));
        assert!(!version_ok("abc"));
    }
}
