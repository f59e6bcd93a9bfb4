//! The probe phase of a database task: connect, check for a usable pgq (as pgqd 3.5
//! does), and tell a primary from a hot standby; and the standby's quiet wait for
//! promotion.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::context::{DbContext, End};
use crate::jobs::Job;
use crate::jobs::ticker::TICKER_EXISTS;
use crate::pg::{PgError, Session, first_text};

/// Whether the database has pgq (also asked by `pgqd --status`).
pub const HAS_PGQ: &str = "select 1 from pg_catalog.pg_namespace where nspname='pgq'";
const PGQ_VERSION: &str = "select pgq.version()";
/// What pgq.version() answers in pgq 3.5, without compiling it.
const EXTENSION_VERSION: &str =
    "select extversion from pg_catalog.pg_extension where extname = 'pgq'";
const IN_RECOVERY: &str = "select pg_catalog.pg_is_in_recovery()";
/// Timeout for the probe queries, which are cheap catalog lookups.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a standby is asked whether it has been promoted.
const PROMOTION_POLL: Duration = Duration::from_secs(1);

/// A connection to a database with a usable pgq.
pub enum Found {
    /// A primary: ticking can start.
    Primary(Session),
    /// A hot standby: ticking waits for promotion.
    Standby(Session),
}

/// Connects and checks. `Err(End::NoPgq)` when the database has no usable pgq.
pub async fn probe(ctx: &DbContext) -> Result<Found, End> {
    let session = ctx.connect().await.map_err(End::failed(Job::Probe))?;
    match check(ctx, &session).await {
        Ok(true) => {}
        Ok(false) => return Err(End::NoPgq),
        Err(e) => return Err(End::failed(Job::Probe)(e)),
    }
    match in_recovery(ctx, &session).await {
        Ok(true) => {
            info!("server is a hot standby: waiting for promotion");
            Ok(Found::Standby(session))
        }
        Ok(false) => Ok(Found::Primary(session)),
        Err(e) => Err(End::failed(Job::Probe)(e)),
    }
}

/// On a hot standby pgq.ticker() would fail every second; pgqd 3.5 logs each
/// failure. We wait quietly and start as soon as the server is promoted.
pub async fn wait_for_promotion(ctx: &DbContext, session: Session) -> End {
    loop {
        if !ctx.pause(PROMOTION_POLL).await {
            return End::Stopped;
        }
        match in_recovery(ctx, &session).await {
            Ok(true) => continue,
            Ok(false) => {
                info!("server promoted: starting the ticker");
                return End::Reprobe;
            }
            Err(e) => return End::failed(Job::Probe)(e),
        }
    }
}

/// `true` when the database has a pgq this daemon can tick.
///
/// pgq.version() reads the extension's version from `pg_extension` (pgq 3.5), so
/// that is read directly: the ticker's backend then never compiles the PL/pgSQL
/// function (its memory is the one figure where pgqd 3.5's backends were ahead).
/// Without the extension row, as pgqd 3.5: the schema, then pgq.version().
async fn check(ctx: &DbContext, session: &Session) -> Result<bool, PgError> {
    let shutdown = &ctx.shutdown;
    let rows = session
        .query(EXTENSION_VERSION, &[], PROBE_TIMEOUT, shutdown)
        .await?;
    if let Some(version) = first_text(&rows) {
        return Ok(accept(version));
    }
    if session
        .query(HAS_PGQ, &[], PROBE_TIMEOUT, shutdown)
        .await?
        .is_empty()
    {
        debug!("no pgq schema; checking again in check_period");
        return Ok(false);
    }
    let rows = session
        .query(PGQ_VERSION, &[], PROBE_TIMEOUT, shutdown)
        .await?;
    match first_text(&rows) {
        Some(version) => Ok(accept(version)),
        None => check_unversioned(ctx, session).await,
    }
}

/// Logs the verdict on `version` as pgqd 3.5 does.
fn accept(version: &str) -> bool {
    if !version_ok(version) {
        warn!("bad pgq version, ignoring: {version}");
        return false;
    }
    info!("pgq version ok: {version}");
    true
}

/// pgq installed without the extension mechanism can answer NULL from
/// pgq.version(): accept it when pgq.ticker() is there (pgqd 3.5 rejects it).
async fn check_unversioned(ctx: &DbContext, session: &Session) -> Result<bool, PgError> {
    let rows = session
        .query(TICKER_EXISTS, &[], PROBE_TIMEOUT, &ctx.shutdown)
        .await?;
    if rows.is_empty() {
        warn!("bad pgq version, ignoring: pgq.version() is NULL and pgq.ticker() is missing");
        return Ok(false);
    }
    info!("pgq version ok: unknown (pgq.version() is NULL, pgq.ticker() exists)");
    Ok(true)
}

async fn in_recovery(ctx: &DbContext, session: &Session) -> Result<bool, PgError> {
    let rows = session
        .query(IN_RECOVERY, &[], PROBE_TIMEOUT, &ctx.shutdown)
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.try_get(0).ok())
        .unwrap_or(false))
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
