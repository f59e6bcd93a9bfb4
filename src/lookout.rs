//! The look for other tickers on the server (see `jobs::watch`): made by the
//! supervisor every 30 s (every 2 s while a database is left to another ticker) on a
//! session to `initial_database` opened and closed for it, and handed to the database
//! tasks, which report and yield. One backend reads `pg_stat_activity` for the whole
//! server; the kept ticker sessions never do.

use std::time::Duration;

use pgconninfo::{Defaults, resolve};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::jobs::Limits;
use crate::jobs::watch::{self, RECENT, Sightings};
use crate::pg::{PgError, Session};

const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Looks once; `ours` are this pgqd's ticker backends.
pub async fn look(
    config: &Config,
    defaults: &Defaults,
    ours: &[i32],
    shutdown: &CancellationToken,
) -> Result<Sightings, PgError> {
    let target = resolve(&config.base_connstr, &config.initial_database, defaults)
        .map_err(PgError::settings)?;
    let session = tokio::select! {
        session = Session::open(&target) => session?,
        _ = shutdown.cancelled() => return Err(PgError::shutdown()),
    };
    let limits = Limits {
        timeout: LOOK_TIMEOUT,
        shutdown,
    };
    let window = RECENT.max(config.ticker_period * 3);
    watch::tickers(&session, &limits, window, ours, false).await
}
