//! One database: a task that probes it for pgq, waits on a hot standby, takes the
//! database's leader lock (or follows the instance that holds it), then ticks with
//! housekeeping between the ticks, on one kept connection. Each phase lives in a file
//! of its own and returns how it ended ([`End`]); this file alone maps those ends to
//! the next state, with the backoff and the outage lines.
//!
//! - `context`: what the phases share, the phase ends and the outage bookkeeping.
//! - `probe`: connect, check pgq, primary or standby; the wait for promotion.
//! - `leader`: the leader lock per database; the follower's quiet wait to take over.
//! - `ticking`: `pgq.ticker()` at a fixed rate, housekeeping after each call.
//! - `engine`: the ticker calls of quiet stretches, for all databases in one task.
//! - `housekeeping`: retry and maintenance, inline and bounded, slow work moved aside.
//! - `round`: a maintenance round in progress, its calls made the same way in both lanes.
//! - `slow_lane`: slow work on a short-lived second connection.

mod context;
pub mod engine;
mod foreign;
mod housekeeping;
mod leader;
mod probe;
mod round;
mod slow_lane;
mod ticking;

use std::time::Duration;

use tracing::{error, warn};

pub use context::{DbContext, End, Outage};
pub use housekeeping::Housekeeping;
pub use leader::Leadership;
pub use probe::HAS_PGQ;
pub use ticking::Ticking;

use crate::jobs::Job;
use crate::pg::{PgError, Session};
use crate::schedule::Backoff;
use crate::stats::DbState;
use probe::Found;

/// What the database task does next; each state owns what it needs.
enum State {
    Probing,
    NoPgq,
    Standby(Session),
    /// The session and how it stands with the leader lock (held, or not in use).
    Ticking(Session, Leadership),
    /// Another instance holds the leader lock; the session tries it every second.
    Following(Session),
    BackingOff(Duration),
    Stopped,
}

impl State {
    fn kind(&self) -> DbState {
        match self {
            State::Probing | State::Stopped => DbState::Probing,
            State::NoPgq => DbState::NoPgq,
            State::Standby(_) => DbState::Standby,
            State::Ticking(..) => DbState::Ticking,
            State::Following(_) => DbState::Follower,
            State::BackingOff(_) => DbState::BackingOff,
        }
    }

    /// Whether this instance leads the database (`None`: no lock in play).
    fn leader(&self) -> Option<bool> {
        match self {
            State::Ticking(_, leadership) if leadership.holds_lock() => Some(true),
            State::Following(_) => Some(false),
            _ => None,
        }
    }
}

/// The long-running task of one database.
pub struct DbTask {
    ctx: DbContext,
    backoff: Backoff,
    outage: Outage,
    /// Retry and maintenance schedules, kept across reconnects: after a server restart
    /// a thousand databases reconnect and tick first; their housekeeping comes when due.
    housekeeping: Option<Housekeeping>,
    /// How soon a database without pgq (or one that does not exist yet) is looked at
    /// again: from 5 s doubling up to check_period, so a database that is new gets its
    /// ticks within seconds of `create extension pgq` (pgqd 3.5 waits check_period).
    recheck: Backoff,
}

/// The first look again at a database without pgq or not there yet (then 10 s, 20 s,
/// 40 s, then check_period): each look is a new session, and a cluster may hold many
/// databases that will never have pgq.
const FIRST_RECHECK: Duration = Duration::from_secs(5);

impl DbTask {
    pub fn new(ctx: DbContext) -> DbTask {
        DbTask {
            ctx,
            backoff: Backoff::new(),
            outage: Outage::default(),
            housekeeping: None,
            recheck: Backoff::between(FIRST_RECHECK, FIRST_RECHECK),
        }
    }

    /// Runs until the shutdown token (the supervisor's child token) is cancelled.
    pub async fn run(mut self) {
        let mut state = State::Probing;
        loop {
            self.ctx.stats.set_state(state.kind());
            self.ctx.stats.set_leader(state.leader());
            // Each phase's future is boxed, so that an idle database task holds the
            // future of the phase it is in, not one the size of the largest phase.
            state = match state {
                State::Probing => Box::pin(self.probe()).await,
                State::NoPgq => {
                    let delay = self.recheck_delay();
                    self.idle(delay).await
                }
                State::Standby(session) => {
                    let end = Box::pin(probe::wait_for_promotion(&self.ctx, session)).await;
                    self.next(end)
                }
                State::Ticking(session, leadership) => {
                    Box::pin(self.tick(session, leadership)).await
                }
                State::Following(session) => {
                    match Box::pin(Leadership::follow(&self.ctx, session)).await {
                        Ok((session, leadership)) => State::Ticking(session, leadership),
                        Err(end) => self.next(end),
                    }
                }
                State::BackingOff(delay) => self.idle(delay).await,
                State::Stopped => break,
            };
        }
        if let Some(housekeeping) = &mut self.housekeeping {
            housekeeping.finish().await;
        }
    }

    /// The wait before looking again at a database without pgq or not there yet.
    fn recheck_delay(&mut self) -> Duration {
        self.recheck.set_max(self.ctx.config().check_period);
        self.recheck.next_delay()
    }

    async fn idle(&self, delay: Duration) -> State {
        if self.ctx.pause(delay).await {
            State::Probing
        } else {
            State::Stopped
        }
    }

    async fn probe(&mut self) -> State {
        match probe::probe(&self.ctx).await {
            Ok(found) => {
                self.outage.connected();
                match found {
                    Found::Primary(session) => self.claim(session).await,
                    Found::Standby(session) => State::Standby(session),
                }
            }
            Err(end) => self.next(end),
        }
    }

    /// On a primary: lead (tick) when the leader lock is ours, else follow.
    async fn claim(&mut self, session: Session) -> State {
        match Leadership::claim(&self.ctx, &session, &self.ctx.config()).await {
            Ok(Some(leadership)) => State::Ticking(session, leadership),
            Ok(None) => State::Following(session),
            Err(end) => self.next(end),
        }
    }

    async fn tick(&mut self, session: Session, leadership: Leadership) -> State {
        let mut ticking = Ticking::leading(&self.ctx, session, leadership);
        // The first ticking phase runs both jobs at once, as pgqd does when it finds pgq.
        if let Some(housekeeping) = self.housekeeping.take() {
            ticking = ticking.with_housekeeping(housekeeping);
        }
        // A refusal's outage (no permission) ends with the first tick that works.
        ticking = ticking.with_outage(std::mem::take(&mut self.outage));
        let end = ticking.run().await;
        self.housekeeping = Some(ticking.take_housekeeping());
        self.outage = ticking.take_outage();
        // The backoff starts over only once ticking works: a database that connects
        // but fails at once is never re-probed faster than the backoff allows.
        if ticking.ticked() {
            self.backoff.reset();
        }
        if let End::Follow = end {
            return State::Following(ticking.into_session());
        }
        self.next(end)
    }

    /// The next state after a phase ended: a fast, backed-off reconnect for a lost
    /// connection or a re-probe, a wait of check_period for a refusal or an
    /// unexpected error.
    fn next(&mut self, end: End) -> State {
        match end {
            End::Stopped => State::Stopped,
            End::NoPgq => {
                self.outage.end();
                State::NoPgq
            }
            End::Reprobe => State::BackingOff(self.backoff.next_delay()),
            // Only the ticking phase ends so, and `tick` follows on its session; had
            // another phase lost its session, a probe finds the leader again.
            End::Follow => State::Probing,
            End::Failed { job, error } => self.failed(job, error),
        }
    }

    /// A refusal (no such database, bad password, no permission) or an unexpected
    /// error is tried again after check_period; a lost connection after the backoff.
    /// Either way a run of failures is one outage: a line when it starts, a reminder
    /// at most once a minute, a line when it ends.
    fn failed(&mut self, job: Job, error: PgError) -> State {
        let repeat = self.ctx.count_error(job, &error);
        if error.is_timeout() {
            warn!(job = %job, "{error}; reconnecting");
            return State::BackingOff(self.backoff.next_delay());
        }
        if error.is_refusal() || error.is_connection_lost() {
            // Only the probe makes a connection from nothing; every other job had one,
            // so for them a failure to connect (again) means the connection was lost.
            let reaching = error.is_connect() || error.is_connection_lost();
            let what = match (job, reaching) {
                (Job::Probe, true) => "cannot connect".to_string(),
                (_, true) => "connection lost".to_string(),
                _ => format!("{job} refused"),
            };
            if self.outage.begin(job, &error, &what, self.hint()) {
                self.ctx.stats.outage();
            }
            if !reaching {
                self.outage.refused();
            }
            if error.is_missing_database() {
                // Dropped or renamed: the listing says which, and ends this task.
                self.ctx.relist.notify_one();
                return State::BackingOff(self.recheck_delay());
            }
            return State::BackingOff(if error.is_refusal() {
                self.ctx.config().check_period
            } else {
                self.backoff.next_delay()
            });
        }
        if let Some(repeated) = repeat.log_now() {
            error!(
                job = %job,
                sqlstate = error.sqlstate(),
                "{job} failed: {error}{repeated}"
            );
        }
        State::BackingOff(self.ctx.config().check_period)
    }

    /// A hint for a database name that looks like it carries an inline comment.
    fn hint(&self) -> &'static str {
        if self.ctx.name.contains('#') {
            "; the name contains '#': pgqd.ini has no inline comments, so database_list may hold a comment"
        } else {
            ""
        }
    }
}
