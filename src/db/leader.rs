//! The leader lock of one database: only the pgqd instance whose ticker session holds
//! it ticks the database, so instances that reach the same primary (a sidecar per
//! node, a redundant pair, a multi-host `base_connstr`) never tick at once; the others
//! follow quietly on a kept connection and take over within a second of the leader's
//! session ending.
//!
//! Why a lock: pgq does not serialize ticks. Two concurrent `pgq.ticker()` calls both
//! insert a tick, and can order tick ids opposite to their snapshots, which delivers
//! events twice. Rotation and `pgq.maint_retry_events()` are already serialized inside
//! pgq; the lock protects ticking. The key is the one other PgQ tickers use (database
//! oid, pgq schema oid), so they and we also keep apart. A lock is taken only after the
//! standby check: advisory locks work on a hot standby too.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::context::{DbContext, End};
use crate::config::Config;
use crate::jobs::Job;
use crate::pg::{PgError, Session};

/// Takes the community key without waiting (so no lock-wait alerts), and reads the
/// backend's pid for the pooler guard in the same call. No row: pgq is gone.
const TRY_LOCK: &str = "select pg_catalog.pg_try_advisory_lock(d.oid::int, n.oid::int), pg_catalog.pg_backend_pid() from pg_catalog.pg_database d, pg_catalog.pg_namespace n where d.datname = current_catalog and n.nspname = 'pgq'";
const UNLOCK: &str = "select pg_catalog.pg_advisory_unlock(d.oid::int, n.oid::int) from pg_catalog.pg_database d, pg_catalog.pg_namespace n where d.datname = current_catalog and n.nspname = 'pgq'";
/// Who holds the key: a two-integer advisory lock shows its keys as classid and objid,
/// with objsubid 2.
const HOLDER: &str = "select l.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr) || ':' || a.client_port, 'local') from pg_catalog.pg_locks l join pg_catalog.pg_database d on d.oid = l.database join pg_catalog.pg_namespace n on n.oid = l.objid left join pg_catalog.pg_stat_activity a on a.pid = l.pid where d.datname = current_catalog and n.nspname = 'pgq' and l.locktype = 'advisory' and l.classid = d.oid and l.objsubid = 2 and l.granted limit 1";
/// The session limits of a leader and of a follower (PostgreSQL >= 14; older servers
/// skip them): an idle session ends after $1 ms and unacknowledged data fails the
/// socket after $1 ms; keepalive probes start after $2 s idle; a running query checks
/// every second whether the client is still there. A partitioned leader's backend then
/// exits, and frees the lock, within about $1 ms (a vanished follower's, its
/// connection slot). The leader ticks every ticker_period and a follower tries the
/// lock every second, well inside $1, so a live instance never idles out.
const LIMIT_SESSION: &str = "select pg_catalog.set_config('idle_session_timeout', $1, false), pg_catalog.set_config('tcp_user_timeout', $1, false), pg_catalog.set_config('tcp_keepalives_idle', $2, false), pg_catalog.set_config('tcp_keepalives_interval', '1', false), pg_catalog.set_config('client_connection_check_interval', '1000', false) where pg_catalog.current_setting('server_version_num')::int >= 140000";
/// Timeout for the lock calls, which never wait for a lock.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a follower tries the lock.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);
/// The least a leader's idle session may live (see [`idle_limit`]).
const MIN_IDLE_LIMIT: Duration = Duration::from_secs(10);

/// How a session stands with the leader lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// No lock is taken: `leader_lock = 0` (pgqd 3.5's behaviour), or not yet claimed.
    NotUsed,
    /// The session's backend `backend` holds it; its limits are set for `period`.
    Held { backend: i32, period: Duration },
    /// The pooler guard tripped: a transaction pooler moves our calls between server
    /// backends, so the lock means nothing. Ticking goes on without it.
    Pooled,
}

/// How the lock came to be ours, for the line that says so.
enum Taken {
    /// Claimed on a session that did not follow.
    Claimed,
    /// After following another instance this long.
    TookOver(Duration),
}

/// This instance's leadership of one database on the session that ticks it: owns
/// the lock's state, moves it with the session, and logs each of its transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    lock: Lock,
}

impl Leadership {
    /// Not claimed yet: the ticking phase's first turn claims it (with `leader_lock` on).
    pub fn unclaimed() -> Leadership {
        Leadership {
            lock: Lock::NotUsed,
        }
    }

    /// Whether this instance holds the lock (not: ticks without it).
    pub fn holds_lock(&self) -> bool {
        matches!(self.lock, Lock::Held { .. })
    }

    /// On a primary: `Ok(Some(_))` to tick, `Ok(None)` when another session holds the
    /// lock. With `leader_lock = 0`, ticks without asking.
    pub async fn claim(
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<Option<Leadership>, End> {
        let mut leadership = Leadership::unclaimed();
        let ours = leadership.take(ctx, session, config).await?;
        Ok(ours.then_some(leadership))
    }

    /// Before a tick: claims the lock when `leader_lock` was switched on by a reload,
    /// and renews the session limits when ticker_period changed. `Err(End::Follow)`
    /// when another instance holds the lock.
    pub async fn keep(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<(), End> {
        match self.lock {
            Lock::NotUsed if config.leader_lock != 0 => {
                let ours = self.take(ctx, session, config).await?;
                if !ours {
                    return Err(End::Follow);
                }
            }
            Lock::Held { backend, period } if period != config.ticker_period => {
                limit_session(ctx, session, config.ticker_period).await?;
                self.lock = Lock::Held {
                    backend,
                    period: config.ticker_period,
                };
            }
            _ => {}
        }
        Ok(())
    }

    /// The ticker connection is replaced (connection_lifetime, a timeout, a closed
    /// connection): moves the lock from `old` to `new`.
    ///
    /// The lock is released on the old session, the old session closed, and only then
    /// taken on the new one. Taking it on the new session first is impossible (the old
    /// one holds it), and ticking on the new session before it holds the lock could
    /// make two leaders. Between the release and the claim there is a window of one
    /// round trip: an instance that tries the lock just then (it is waiting, as a
    /// follower) takes it and leads, and we follow; with no one waiting we keep leading
    /// with no gap in ticking. Either way exactly one instance ticks. When the release
    /// fails (the old session is broken), the old backend may hold the lock until it
    /// exits; we then follow our own old backend briefly and take the lock over when it
    /// is gone.
    pub async fn renew(
        &mut self,
        ctx: &DbContext,
        old: Session,
        new: &Session,
        config: &Config,
    ) -> Result<(), End> {
        if self.holds_lock() {
            release(ctx, &old).await;
        }
        drop(old);
        if self.lock == Lock::Pooled {
            return Ok(());
        }
        if !self.take(ctx, new, config).await? {
            return Err(End::Follow);
        }
        Ok(())
    }

    /// The pooler guard, after a ticker call on the session that took the lock: the
    /// call ran on `backend`. A different backend than the lock's means a pooler in
    /// transaction mode between us and the server: the lock stays on a backend others
    /// may be routed to (and, locks being re-entrant, "hold" too). Leadership is then
    /// meaningless, so we stop claiming it and tick without it: stopping ticking
    /// instead would leave the database unticked while a pooler backend keeps the lock,
    /// and an instance behind such a pooler ticks as pgqd 3.5 always did. One error
    /// line says why.
    pub fn check_backend(&mut self, backend: i32) {
        let Lock::Held {
            backend: holder, ..
        } = self.lock
        else {
            return;
        };
        if holder == backend {
            return;
        }
        error!(
            job = %Job::Leader,
            "the ticker call ran on backend pid {backend}, the leader lock was taken on pid {holder}: a pooler in transaction mode sits between pgqd and the server, so the leader lock means nothing; ticking without it (connect directly or through session pooling)"
        );
        self.lock = Lock::Pooled;
    }

    /// The follower phase: another instance holds the lock. One line names it; then
    /// the lock is tried every second, quietly, on the kept session. Returns the
    /// session and its leadership once the lock is ours (or `leader_lock` was switched
    /// off by a reload).
    pub async fn follow(ctx: &DbContext, session: Session) -> Result<(Session, Leadership), End> {
        let holder = holder(ctx, &session)
            .await
            .map_err(End::failed(Job::Leader))?;
        info!(
            job = %Job::Leader,
            "following: another instance leads ({holder}); taking over when its session ends"
        );
        // The leader's limits on the follower's session too: a follower that vanishes
        // (its host gone, or cut off longer than its kernel retransmits its goodbye)
        // would otherwise leave its idle backend on the server until the server's TCP
        // keepalives, two hours by default. It tries the lock every second, well
        // inside the limit.
        limit_session(ctx, &session, ctx.config().ticker_period).await?;
        let since = Instant::now();
        loop {
            if !ctx.pause(FOLLOW_RETRY).await {
                return Err(End::Stopped);
            }
            if session.is_closed() {
                return Err(End::Reprobe);
            }
            let Some(lock) = try_lock(ctx, &session, &ctx.config()).await? else {
                continue;
            };
            let mut leadership = Leadership::unclaimed();
            leadership.became(lock, Taken::TookOver(since.elapsed()));
            return Ok((session, leadership));
        }
    }

    /// Tries the lock on `session`: `true` when it is ours (or not in use).
    async fn take(
        &mut self,
        ctx: &DbContext,
        session: &Session,
        config: &Config,
    ) -> Result<bool, End> {
        let Some(lock) = try_lock(ctx, session, config).await? else {
            return Ok(false);
        };
        self.became(lock, Taken::Claimed);
        Ok(true)
    }

    /// The one place that says when this instance starts to lead: a lock taken anew
    /// is logged, one moved to a new session of ours is not.
    fn became(&mut self, lock: Lock, taken: Taken) {
        let was_held = self.holds_lock();
        self.lock = lock;
        match (taken, lock) {
            (Taken::Claimed, Lock::Held { .. }) if !was_held => {
                info!(job = %Job::Leader, "leading: took the leader lock");
            }
            (Taken::TookOver(_), Lock::NotUsed) => info!(
                job = %Job::Leader,
                "leader_lock = 0: ticking without the leader lock"
            ),
            (Taken::TookOver(after), _) => {
                let secs = after.as_secs_f64();
                info!(
                    job = %Job::Leader,
                    "leading: took over the leader lock after following for {secs:.1} s"
                );
            }
            _ => {}
        }
    }
}

/// Takes the lock on `session` if it is free: `Ok(Some(lock))` to tick, `Ok(None)`
/// when another session holds it. With `leader_lock = 0`, ticks without asking.
async fn try_lock(
    ctx: &DbContext,
    session: &Session,
    config: &Config,
) -> Result<Option<Lock>, End> {
    if config.leader_lock == 0 {
        return Ok(Some(Lock::NotUsed));
    }
    let rows = session
        .query(TRY_LOCK, &[], CALL_TIMEOUT, &ctx.shutdown)
        .await
        .map_err(End::failed(Job::Leader))?;
    let Some(row) = rows.first() else {
        warn!(job = %Job::Leader, "pgq is gone");
        return Err(End::Reprobe);
    };
    let taken: bool = row.try_get(0).unwrap_or(false);
    if !taken {
        return Ok(None);
    }
    let backend: i32 = row.try_get(1).unwrap_or(0);
    let period = config.ticker_period;
    limit_session(ctx, session, period).await?;
    Ok(Some(Lock::Held { backend, period }))
}

/// Releases the lock; a failure only means the old backend frees it when it exits.
async fn release(ctx: &DbContext, session: &Session) {
    if let Err(e) = session
        .query(UNLOCK, &[], CALL_TIMEOUT, &ctx.shutdown)
        .await
    {
        debug!(job = %Job::Leader, "releasing the leader lock failed: {e}");
    }
}

/// Who holds the lock, for the follower's one line.
async fn holder(ctx: &DbContext, session: &Session) -> Result<String, PgError> {
    let rows = session
        .query(HOLDER, &[], CALL_TIMEOUT, &ctx.shutdown)
        .await?;
    let Some(row) = rows.first() else {
        return Ok("the holder has just released it".into());
    };
    let pid: i32 = row.try_get(0).unwrap_or(0);
    let app: String = row.try_get(1).unwrap_or_default();
    let client: String = row.try_get(2).unwrap_or_default();
    Ok(format!(
        "holder pid={pid} application_name={app:?} client={client}"
    ))
}

/// Sets a leader's or a follower's session limits for `period`. A server that refuses
/// them (a setting locked down by a hosting provider, say) only logs it: the instance
/// still ticks or follows, and merely a vanished one's session (a leader's with its
/// lock) stays until the server notices it is gone.
async fn limit_session(ctx: &DbContext, session: &Session, period: Duration) -> Result<(), End> {
    let limit = idle_limit(period);
    let millis = limit.as_millis().to_string();
    let keepalive_idle = (limit.as_secs() / 2).max(1).to_string();
    let result = session
        .query(
            LIMIT_SESSION,
            &[Some(&millis), Some(&keepalive_idle)],
            CALL_TIMEOUT,
            &ctx.shutdown,
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.ends_connection() || e.is_shutdown() => Err(End::failed(Job::Leader)(e)),
        Err(e) => {
            warn!(
                job = %Job::Leader,
                sqlstate = e.sqlstate(),
                "cannot set the session's idle_session_timeout and TCP timeouts: {e}; a vanished instance's session (a leader's with its lock) then ends only when the server notices"
            );
            Ok(())
        }
    }
}

/// How long the leader's session may idle before the server ends it: max(10 s,
/// 3 x ticker_period). Ticking keeps a live leader's session busy far more often; a
/// leader that vanished (a partition, a stopped process) loses the lock after this.
pub fn idle_limit(ticker_period: Duration) -> Duration {
    crate::schedule::three_periods(ticker_period, MIN_IDLE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leader's idle limit is three ticker periods, never below 10 s.
    #[test]
    fn idle_limits() {
        assert_eq!(idle_limit(Duration::from_secs(1)), Duration::from_secs(10));
        assert_eq!(
            idle_limit(Duration::from_millis(200)),
            Duration::from_secs(10)
        );
        assert_eq!(idle_limit(Duration::from_secs(5)), Duration::from_secs(15));
    }

    /// The pooler guard trips when a tick runs on another backend than the lock's,
    /// and only then; a lock not in use is left alone.
    #[test]
    fn pooler_guard() {
        let period = Duration::from_secs(1);
        let held = Lock::Held { backend: 7, period };
        let mut leadership = Leadership { lock: held };
        leadership.check_backend(7);
        assert_eq!(leadership.lock, held);
        leadership.check_backend(8);
        assert_eq!(leadership.lock, Lock::Pooled);
        leadership.check_backend(9);
        assert_eq!(leadership.lock, Lock::Pooled);
        let mut unused = Leadership::unclaimed();
        unused.check_backend(9);
        assert_eq!(unused, Leadership::unclaimed());
    }
}
