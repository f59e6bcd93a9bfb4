//! Whether another client ticks a database: a backend whose last statement is the
//! all-queue `pgq.ticker()` call, started recently, that is none of this pgqd's
//! ticker backends and holds no leader lock. pgqd 3.5, skytools' `pgqadm.py ticker`
//! and a cron job calling `select pgq.ticker()` take no lock, so the leader lock
//! cannot keep them out; this is how they are found. Londiste's cascading calls the
//! four-argument `pgq.ticker(queue, tick_id, time, seq)` on queues with an external
//! ticker: that call has arguments and is not matched.
//!
//! One look covers the whole server, from one short-lived session: reading
//! `pg_stat_activity` makes a backend copy every backend's status, and the memory it
//! took stays with it, so the kept ticker sessions never read it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pg::{PgError, Session};
use crate::stats::OtherTicker;

use super::Limits;

/// How often the server's sessions are looked at.
pub const LOOK_PERIOD: Duration = Duration::from_secs(30);
/// How often while this pgqd yields a database to another ticker, so that ticking
/// starts again soon after it stops.
pub const YIELD_LOOK_PERIOD: Duration = Duration::from_secs(2);
/// A ticker call counts when it started this recently (or within three ticker
/// periods, when those are longer): pgqd 3.5 calls every ticker_period.
pub const RECENT: Duration = Duration::from_secs(10);

/// Client backends of the server that called `pgq.ticker()` (no arguments) within `$1`
/// seconds, are not among `$2` (this pgqd's ticker backends) and hold no leader lock
/// of their database when `$3` (the advisory lock keyed by the database's oid; another
/// instance of this pgqd that leads holds it); and those whose statements this role
/// cannot see. The statement must be the call itself (`select pgq.ticker()` or
/// `select * from pgq.ticker()`, any case and spacing): a monitoring query that names
/// `pgq.ticker()` in its text, or reads pg_stat_activity for it, is no ticker.
pub const OTHER_TICKERS: &str = r"select a.datname::text, a.pid,
        coalesce(a.application_name, ''),
        coalesce(host(a.client_addr), a.client_hostname, 'local'),
        to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), coalesce(a.query, '')
   from pg_catalog.pg_stat_activity a
  where a.backend_type = 'client backend'
    and a.datname is not null
    and a.pid <> pg_catalog.pg_backend_pid()
    and a.pid <> all ($2::int4[])
    and (a.query = '<insufficient privilege>'
         or a.query ~* '^\s*select\s+(\*\s+from\s+)?pgq\.ticker\s*\(\s*\)'
            and a.query_start > pg_catalog.now() - $1::float8 * interval '1 second'
            and ($3::bool is false or not exists (
                select 1 from pg_catalog.pg_locks l
                 where l.pid = a.pid and l.locktype = 'advisory' and l.granted
                   and l.objsubid = 2 and l.classid = l.database)))
  order by 1, 2";

/// What one look found in one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub tickers: Vec<OtherTicker>,
    /// Some sessions' statements are hidden from this role (it lacks
    /// `pg_read_all_stats`): a ticker among them would go unnoticed.
    pub hidden: bool,
}

/// What one look found, by database (a database with nothing to report is absent).
pub type Sightings = BTreeMap<String, Seen>;

/// The latest look, numbered so that a database task takes each one in once.
#[derive(Debug, Clone, Default)]
pub struct Look {
    pub number: u64,
    pub sightings: Sightings,
}

/// Looks at the server's sessions for tickers; a call counts when it started within
/// `window`; `ours` (this pgqd's ticker backends) are left out, and so are the holders
/// of a leader lock when `leaders_too` is false.
pub async fn tickers(
    session: &Session,
    limits: &Limits<'_>,
    window: Duration,
    ours: &[i32],
    leaders_too: bool,
) -> Result<Sightings, PgError> {
    let exclude_leaders = (!leaders_too).to_string();
    let window = window.as_secs_f64().to_string();
    let ours = format!(
        "{{{}}}",
        ours.iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let rows = session
        .query(
            OTHER_TICKERS,
            &[Some(&window), Some(&ours), Some(&exclude_leaders)],
            limits.timeout,
            limits.shutdown,
        )
        .await?;
    let mut sightings = Sightings::new();
    for row in rows {
        let datname: String = row.try_get(0).unwrap_or_default();
        let query: String = row.try_get(5).unwrap_or_default();
        let seen = sightings.entry(datname).or_default();
        if query == "<insufficient privilege>" {
            seen.hidden = true;
            continue;
        }
        seen.tickers.push(OtherTicker {
            pid: row.try_get(1).unwrap_or_default(),
            application_name: row.try_get(2).unwrap_or_default(),
            client: row.try_get(3).unwrap_or_default(),
            backend_start: row.try_get(4).unwrap_or_default(),
            query,
        });
    }
    Ok(sightings)
}
