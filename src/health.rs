//! The health rules, in one place, read by the HTTP endpoints and `STATUS=`:
//! liveness (the loops go round), readiness (config loaded, first listing done), and
//! whether every database this instance should tick has ticked lately.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::stats::{DbState, DbStatus, Stats};

/// The supervisor's loop beats every second; this much silence means it is stuck.
pub const SUPERVISOR_SILENCE: Duration = Duration::from_secs(10);
/// Extra time allowed to a ticking turn beyond its own bounds (cancel grace, the
/// scheduler on a loaded machine).
const TURN_GRACE: Duration = Duration::from_secs(10);

/// The default age limit of `/healthz`: three ticker periods, at least 10 s.
pub fn default_max_tick_age(config: &Config) -> Duration {
    crate::schedule::three_periods(config.ticker_period, Duration::from_secs(10))
}

/// Liveness: the supervisor's loop beats, and no ticking database's loop is stuck
/// longer than one turn can take (its ticker call, a reconnect and the housekeeping
/// budget, each bounded). No SQL is run to decide.
pub fn live(stats: &Stats, config: &Config) -> Result<(), String> {
    let silence = stats.last_beat().elapsed();
    if silence > SUPERVISOR_SILENCE {
        return Err(format!("the supervisor loop is silent for {silence:.1?}"));
    }
    let turn_bound =
        config.ticker_timeout + config.connect_timeout + config.ticker_period * 2 + TURN_GRACE;
    let stuck: Vec<String> = stats.with_databases(|dbs| {
        dbs.iter()
            .filter(|(_, s)| s.state == DbState::Ticking)
            .filter(|(_, s)| s.last_turn.is_some_and(|t| t.elapsed() > turn_bound))
            .map(|(name, _)| name.clone())
            .collect()
    });
    if stuck.is_empty() {
        Ok(())
    } else {
        Err(format!("database loops stuck: {}", stuck.join(", ")))
    }
}

/// Readiness: the config is loaded and the first database listing is done. Never
/// tied to standby or leadership: a not-ready sidecar would take its whole
/// PostgreSQL pod out of service.
pub fn ready(stats: &Stats) -> Result<(), String> {
    if stats.discovered() {
        Ok(())
    } else {
        Err("the first database listing is not done yet".into())
    }
}

/// A database that should tick and has not within the age limit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stale {
    pub datname: String,
    pub state: &'static str,
    /// Seconds since the last tick, or since the database was first seen.
    pub seconds: f64,
    pub last_error: Option<String>,
}

/// The databases this instance should tick (not those without pgq, on a standby,
/// or led by another instance) that have not ticked within `max_age`. One that never
/// ticked is given `max_age` from when ticks became expected (its task's start, pgq
/// installed, a promotion), and is stale after that like any other.
pub fn stale(stats: &Stats, max_age: Duration) -> Vec<Stale> {
    let now = Instant::now();
    stats.with_databases(|dbs| {
        dbs.iter()
            .filter_map(|(name, s)| {
                let since = s.unticked_since()?;
                let age = now.duration_since(since);
                (age > max_age).then(|| stale_entry(name, s, age))
            })
            .collect()
    })
}

fn stale_entry(name: &str, status: &DbStatus, age: Duration) -> Stale {
    Stale {
        datname: name.to_string(),
        state: status.state.as_str(),
        seconds: (age.as_secs_f64() * 10.0).round() / 10.0,
        last_error: status.last_error.as_ref().map(|e| match &e.sqlstate {
            Some(code) => format!("{} {code}: {}", e.job, e.message),
            None => format!("{}: {}", e.job, e.message),
        }),
    }
}

/// A one-line summary for systemd's `STATUS=`: how many databases tick, and the
/// failing ones with their last error.
pub fn summary(stats: &Stats, max_age: Duration) -> String {
    let (ticking, should, total) = stats.with_databases(|dbs| {
        let fresh = |s: &DbStatus| s.last_tick.is_some_and(|t| t.elapsed() <= max_age);
        (
            dbs.values()
                .filter(|s| s.state == DbState::Ticking && fresh(s))
                .count(),
            dbs.values().filter(|s| s.state.should_tick()).count(),
            dbs.len(),
        )
    });
    let foreign: Vec<String> = stats.with_databases(|dbs| {
        (dbs.iter())
            .filter(|(_, s)| s.foreign_ticker.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    });
    let stale = stale(stats, max_age);
    let mut line = format!("ticking {ticking}/{should} databases ({total} known)");
    if !foreign.is_empty() {
        line.push_str(&format!("; another ticker in {}", foreign.join(", ")));
    }
    if !stale.is_empty() {
        let failing: Vec<String> = stale
            .iter()
            .take(3)
            .map(|s| match &s.last_error {
                Some(e) => format!("{} {}", s.datname, e.chars().take(80).collect::<String>()),
                None => format!("{} ({})", s.datname, s.state),
            })
            .collect();
        line.push_str("; failing: ");
        line.push_str(&failing.join("; "));
        if stale.len() > 3 {
            line.push_str(&format!(" and {} more", stale.len() - 3));
        }
    }
    line
}
