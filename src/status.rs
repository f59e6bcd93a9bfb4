//! `pgqd --status` and `pgqd --healthcheck`: questions asked from the command line.
//! `--status` connects itself (as skytools' `pgqadm.py status` did) and reports each
//! database's role, pgq version, queues and consumers, flagging what needs a person;
//! `--healthcheck` asks a running daemon's `/healthz`, for container health checks.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use pgconninfo::{Defaults, resolve};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::HealthPath;
use crate::config::{self, Config};
use crate::db::HAS_PGQ;
use crate::http::client::{self, ClientFile};
use crate::http::web_config::WebConfig;
use crate::jobs::{Limits, queue_stats, watch};
use crate::pg::{PgError, Session};
use crate::stats::{ConsumerStats, OtherTicker};

const ROLE_AND_VERSION: &str = "select pg_catalog.pg_is_in_recovery(), pgq.version()";
const QUEUES: &str = "select queue_name,
        extract(epoch from ticker_lag)::float8,
        extract(epoch from queue_ticker_idle_period)::float8,
        ev_per_sec, ev_new,
        extract(epoch from now() - queue_switch_time)::float8,
        extract(epoch from queue_rotation_period)::float8,
        queue_ticker_paused, queue_external_ticker
   from pgq.get_queue_info() order by 1";
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A queue is stalled when its last tick is older than this many times the longest
/// expected gap between ticks: pgq ticks an idle queue once per ticker_idle_period,
/// and no queue can tick faster than the daemon calls (see [`expected_gap`]).
const STALLED_IDLE_PERIODS: f64 = 1.5;
/// Rotation is blocked when the tables were last switched this many rotation periods ago.
const BLOCKED_ROTATION_PERIODS: f64 = 2.0;
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// A ticker call this recent counts as a ticker of the database.
const RECENT_TICKER: Duration = Duration::from_secs(10);

/// One database's report.
#[derive(Debug, Serialize)]
struct Database {
    name: String,
    /// `primary`, `standby`, `no pgq` or `error`.
    role: &'static str,
    pgq_version: Option<String>,
    error: Option<String>,
    queues: Vec<Queue>,
    consumers: Vec<ConsumerStats>,
    /// The clients that called the all-queue `pgq.ticker()` lately: one (a pgqd) is
    /// normal; more than one is flagged (a pgqd 3.5 left running beside this one).
    tickers: Vec<OtherTicker>,
}

#[derive(Debug, Serialize)]
struct Queue {
    name: String,
    ticker_lag: Option<f64>,
    idle_period: Option<f64>,
    events_per_second: Option<f64>,
    new_events: Option<i64>,
    since_rotation: Option<f64>,
    rotation_period: Option<f64>,
    paused: bool,
    external_ticker: bool,
    flags: Vec<String>,
}

/// `--status [--json]`: exit 0 when nothing is flagged, 1 otherwise.
pub fn report(path: &Path, json: bool) -> ExitCode {
    let config = match config::load(path) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            eprintln!("ERROR {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ERROR cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let databases = match runtime.block_on(gather(&config)) {
        Ok(databases) => databases,
        Err(e) => {
            eprintln!(
                "ERROR cannot list the databases through {}: {e}",
                config.initial_database
            );
            return ExitCode::FAILURE;
        }
    };
    if json {
        let text = serde_json::to_string_pretty(&databases).unwrap_or_default();
        println!("{text}");
    } else {
        for db in &databases {
            print!("{}", describe(db));
        }
    }
    let flagged = databases.iter().any(|d| {
        d.error.is_some() || d.tickers.len() > 1 || d.queues.iter().any(|q| !q.flags.is_empty())
    });
    if flagged {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn gather(config: &Config) -> Result<Vec<Database>, PgError> {
    let defaults = Defaults {
        application_name: "pgqd_status".into(),
        connect_timeout: config.connect_timeout,
    };
    let token = CancellationToken::new();
    let names = crate::discovery::databases(config, &defaults, &token).await?;
    let mut databases = Vec::new();
    for name in names {
        let mut db = Database {
            name: name.clone(),
            role: "error",
            pgq_version: None,
            error: None,
            queues: Vec::new(),
            consumers: Vec::new(),
            tickers: Vec::new(),
        };
        if let Err(e) = inspect(config, &defaults, &token, &mut db).await {
            db.role = "error";
            db.error = Some(e.to_string());
        }
        databases.push(db);
    }
    Ok(databases)
}

async fn inspect(
    config: &Config,
    defaults: &Defaults,
    token: &CancellationToken,
    db: &mut Database,
) -> Result<(), PgError> {
    let target = resolve(&config.base_connstr, &db.name, defaults).map_err(PgError::settings)?;
    let session = Session::open(&target).await?;
    let limits = Limits {
        timeout: QUERY_TIMEOUT,
        shutdown: token,
    };
    if session
        .query(HAS_PGQ, &[], QUERY_TIMEOUT, token)
        .await?
        .is_empty()
    {
        db.role = "no pgq";
        return Ok(());
    }
    let rows = session
        .query(ROLE_AND_VERSION, &[], QUERY_TIMEOUT, token)
        .await?;
    let standby: bool = rows
        .first()
        .and_then(|r| r.try_get(0).ok())
        .unwrap_or(false);
    db.role = if standby { "standby" } else { "primary" };
    db.pgq_version = rows.first().and_then(|r| r.try_get(1).ok()).flatten();
    db.consumers = queue_stats::consumers(&session, &limits).await?;
    if !standby {
        let all = watch::tickers(&session, &limits, RECENT_TICKER, &[], true).await?;
        db.tickers = all
            .get(&db.name)
            .map(|seen| seen.tickers.clone())
            .unwrap_or_default();
    }
    for row in session.query(QUEUES, &[], QUERY_TIMEOUT, token).await? {
        let mut queue = Queue {
            name: row.try_get(0).unwrap_or_default(),
            ticker_lag: row.try_get(1).ok().flatten(),
            idle_period: row.try_get(2).ok().flatten(),
            events_per_second: row.try_get(3).ok().flatten(),
            new_events: row.try_get(4).ok().flatten(),
            since_rotation: row.try_get(5).ok().flatten(),
            rotation_period: row.try_get(6).ok().flatten(),
            paused: row.try_get(7).ok().flatten().unwrap_or(false),
            external_ticker: row.try_get(8).ok().flatten().unwrap_or(false),
            flags: Vec::new(),
        };
        // A standby's ticks come from its primary; only a primary can be stalled here.
        if !standby {
            queue.flags = flags(&queue, &db.consumers, expected_gap(config));
        }
        db.queues.push(queue);
    }
    Ok(())
}

/// The shortest gap between ticks a queue can expect, whatever its idle period:
/// three ticker periods, and at least a second.
fn expected_gap(config: &Config) -> f64 {
    crate::schedule::three_periods(config.ticker_period, Duration::from_secs(1)).as_secs_f64()
}

/// STALLED (ticker lag over 1.5 idle periods, or 1.5 expected gaps for a queue with
/// a shorter idle period), ROTATION BLOCKED (naming the slowest consumer), PAUSED.
fn flags(queue: &Queue, consumers: &[ConsumerStats], min_gap: f64) -> Vec<String> {
    let mut flags = Vec::new();
    if queue.paused {
        flags.push("PAUSED".to_string());
    } else if let (Some(lag), Some(idle)) = (queue.ticker_lag, queue.idle_period)
        && !queue.external_ticker
        && lag > STALLED_IDLE_PERIODS * idle.max(min_gap)
    {
        flags.push("STALLED".to_string());
    }
    if let (Some(since), Some(period)) = (queue.since_rotation, queue.rotation_period)
        && since > BLOCKED_ROTATION_PERIODS * period
    {
        let slowest = consumers
            .iter()
            .filter(|c| c.queue == queue.name)
            .max_by(|a, b| a.lag.unwrap_or(0.0).total_cmp(&b.lag.unwrap_or(0.0)));
        flags.push(match slowest {
            Some(c) => format!("ROTATION BLOCKED by consumer {}", c.name),
            None => "ROTATION BLOCKED".to_string(),
        });
    }
    flags
}

fn describe(db: &Database) -> String {
    let mut text = format!("{}: {}", db.name, db.role);
    if let Some(version) = &db.pgq_version {
        text.push_str(&format!(", pgq {version}"));
    }
    if let Some(error) = &db.error {
        text.push_str(&format!(": {error}"));
    }
    text.push('\n');
    if !db.tickers.is_empty() {
        let tickers: Vec<String> = (db.tickers.iter())
            .map(|t| format!("pid {} ({}, {})", t.pid, t.application_name, t.client))
            .collect();
        let flag = if db.tickers.len() > 1 {
            "  SEVERAL TICKERS"
        } else {
            ""
        };
        text.push_str(&format!("  tickers: {}{flag}\n", tickers.join(", ")));
    }
    for q in &db.queues {
        text.push_str(&format!(
            "  queue {}: ticker lag {} (idle period {}), {} events/s, {} new events, rotated {} ago{}\n",
            q.name,
            secs(q.ticker_lag),
            secs(q.idle_period),
            q.events_per_second.map_or("-".into(), |v| format!("{v:.1}")),
            q.new_events.map_or("-".into(), |v| v.to_string()),
            secs(q.since_rotation),
            if q.flags.is_empty() { String::new() } else { format!("  {}", q.flags.join(", ")) },
        ));
        for c in db.consumers.iter().filter(|c| c.queue == q.name) {
            text.push_str(&format!(
                "    consumer {}: lag {}, last seen {} ago, {} pending events\n",
                c.name,
                secs(c.lag),
                secs(c.last_seen),
                c.pending_events.map_or("-".into(), |v| v.to_string()),
            ));
        }
    }
    text
}

fn secs(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1} s"))
}

/// `--healthcheck`: GET the running daemon's `/healthz` (or `/livez`, `/readyz`) at
/// `http_listen`; exit 0 on 200. No curl needed in a container image.
pub fn healthcheck(path: &Path, endpoint: HealthPath) -> ExitCode {
    let config = match config::load(path) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            eprintln!("ERROR {e}");
            return ExitCode::FAILURE;
        }
    };
    match ask(&config, endpoint) {
        Ok(status) if status.starts_with("200") => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: {} answered {status}", endpoint.as_str());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The status code and reason of `endpoint`, asked over HTTP/1.0, over TLS and with
/// credentials when the web config asks for them (see `http::client`).
fn ask(config: &Config, endpoint: HealthPath) -> Result<String, String> {
    let listen = config.http_listen.as_str();
    if listen.is_empty() {
        return Err("http_listen is not set: the daemon has no health endpoint".into());
    }
    // A wildcard listen address is reached on the loopback.
    let address = match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_string(),
    };
    let socket = address
        .to_socket_addrs()
        .map_err(|e| format!("http_listen {listen:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("http_listen {listen:?}: no address"))?;
    let web = match &config.http_web_config {
        Some(path) => Some(WebConfig::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let client = match &config.http_healthcheck_config {
        Some(path) => ClientFile::load(path)?,
        None => ClientFile::default(),
    };
    client::get(
        socket,
        endpoint.as_str(),
        web.as_ref(),
        &client,
        HEALTHCHECK_TIMEOUT,
    )
}
