//! Whether another client ticks this database: a backend whose last statement is the
//! all-queue `pgq.ticker()` call, started recently. pgqd 3.5, skytools' `pgqadm.py
//! ticker` and a cron job calling `select pgq.ticker()` take no lock, so the leader
//! lock cannot keep them out; this is how they are found. Londiste's cascading calls
//! the four-argument `pgq.ticker(queue, tick_id, time, seq)` on queues with an external
//! ticker: that call has arguments and is not matched.

use std::time::Duration;

use crate::pg::{PgError, Session};
use crate::stats::OtherTicker;

use super::Limits;

/// Other client backends of this database that called `pgq.ticker()` (no arguments)
/// within `$1` seconds, and those whose statements this role cannot see. A plain
/// substring test, not a regular expression: a backend keeps every regular expression
/// it compiled, and a case-insensitive one costs it about half a megabyte.
pub const OTHER_TICKERS: &str = r"select pid, coalesce(application_name, ''),
        coalesce(host(client_addr), client_hostname, 'local'),
        to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), coalesce(query, '')
   from pg_catalog.pg_stat_activity
  where datname = pg_catalog.current_database()
    and pid <> pg_catalog.pg_backend_pid()
    and backend_type = 'client backend'
    and (query = '<insufficient privilege>'
         or pg_catalog.strpos(pg_catalog.lower(query), 'pgq.ticker()') > 0
            and query_start > pg_catalog.now() - $1::float8 * interval '1 second')
  order by pid";

/// What one look at the other sessions found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub tickers: Vec<OtherTicker>,
    /// Some sessions' statements are hidden from this role (it lacks
    /// `pg_read_all_stats`): a ticker among them would go unnoticed.
    pub hidden: bool,
}

/// Looks at the other sessions of the database `session` is connected to; a ticker
/// counts when its call started within `window`.
pub async fn other_tickers(
    session: &Session,
    limits: &Limits<'_>,
    window: Duration,
) -> Result<Seen, PgError> {
    let window = window.as_secs_f64().to_string();
    let rows = session
        .query(
            OTHER_TICKERS,
            &[Some(&window)],
            limits.timeout,
            limits.shutdown,
        )
        .await?;
    let mut seen = Seen::default();
    for row in rows {
        let query: String = row.try_get(4).unwrap_or_default();
        if query == "<insufficient privilege>" {
            seen.hidden = true;
            continue;
        }
        seen.tickers.push(OtherTicker {
            pid: row.try_get(0).unwrap_or_default(),
            application_name: row.try_get(1).unwrap_or_default(),
            client: row.try_get(2).unwrap_or_default(),
            backend_start: row.try_get(3).unwrap_or_default(),
            query,
        });
    }
    Ok(seen)
}
