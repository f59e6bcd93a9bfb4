//! Which databases to serve: `database_list` as given, or a listing from
//! `initial_database` on a connection opened and closed each time, so a template
//! database is never held open (that would make CREATE DATABASE fail).

use std::time::Duration;

use pgconninfo::{Defaults, resolve};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pg::{PgError, Session};

/// pgqd 3.5's listing query.
const LIST_DATABASES: &str =
    "select datname from pg_database where not datistemplate and datallowconn";
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// The databases to serve, in a stable order without duplicates.
pub async fn databases(
    config: &Config,
    defaults: &Defaults,
    shutdown: &CancellationToken,
) -> Result<Vec<String>, PgError> {
    if !config.database_list.is_empty() {
        let mut names = config.database_list.clone();
        names.sort();
        names.dedup();
        return Ok(names);
    }
    let target = resolve(&config.base_connstr, &config.initial_database, defaults)
        .map_err(PgError::settings)?;
    let session = tokio::select! {
        session = Session::open(&target) => session?,
        _ = shutdown.cancelled() => return Err(PgError::shutdown()),
    };
    let rows = session
        .query(LIST_DATABASES, &[], LIST_TIMEOUT, shutdown)
        .await?;
    // `session` is dropped here: the connection closes before we return.
    let mut names: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
    names.sort();
    Ok(names)
}
