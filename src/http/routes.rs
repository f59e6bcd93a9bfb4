//! The endpoints: `/metrics` for Prometheus, `/livez`, `/readyz` and `/healthz` for
//! orchestrators (GET with a JSON body, 200 or 503; HEAD without a body), and
//! `/status` with each database's state. Only the method, path and query are read.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use crate::config::Config;
use crate::health;
use crate::stats::{DbStatus, Stats, unix};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const JSON: &str = "application/json";

/// Routes one request. Only the path and the query are read; the body is ignored.
pub fn respond(shared: &Shared, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let head = request.method() == Method::HEAD;
    if !head && request.method() != Method::GET {
        return Answer::error(StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD")
            .into_response(false);
    }
    let config = shared.settings.borrow().clone();
    let answer = match request.uri().path() {
        "/metrics" => Answer {
            status: StatusCode::OK,
            content_type: OPENMETRICS,
            body: crate::metrics::render(&shared.registry),
        },
        "/livez" => check(health::live(&shared.stats, &config)),
        "/readyz" => check(health::ready(&shared.stats)),
        "/healthz" => healthz(shared, &config, request.uri().query()),
        "/status" => Answer::json(StatusCode::OK, status(&shared.stats)),
        _ => Answer::error(StatusCode::NOT_FOUND, "no such path"),
    };
    answer.into_response(head)
}

/// What an endpoint answers, before it becomes an HTTP response.
pub struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn json(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            content_type: JSON,
            body: body.to_string(),
        }
    }

    pub fn error(status: StatusCode, message: &str) -> Answer {
        Answer::json(status, json!({ "status": "error", "error": message }))
    }

    /// The response; without its body for a HEAD request.
    pub fn into_response(self, head: bool) -> Response<Full<Bytes>> {
        let body = if head {
            Bytes::new()
        } else {
            Bytes::from(self.body)
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        response
    }
}

fn check(result: Result<(), String>) -> Answer {
    match result {
        Ok(()) => Answer::json(StatusCode::OK, json!({ "status": "ok" })),
        Err(why) => Answer::json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "fail", "reason": why }),
        ),
    }
}

/// `/healthz[?max_tick_age=10s]`: 200 when every database this instance should tick
/// ticked within the age, else 503 naming the stale ones and why.
fn healthz(shared: &Shared, config: &Config, query: Option<&str>) -> Answer {
    let requested = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("max_tick_age="));
    let max_age = match requested.map(parse_age) {
        None => health::default_max_tick_age(config),
        Some(Some(age)) => age,
        Some(None) => {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                "max_tick_age must be seconds, like 10s, 1.5 or 500ms",
            );
        }
    };
    let stale = health::stale(&shared.stats, max_age);
    let body = json!({
        "status": if stale.is_empty() { "ok" } else { "stale" },
        "max_tick_age_seconds": max_age.as_secs_f64(),
        "stale": stale,
    });
    let code = if stale.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Answer::json(code, body)
}

/// `10`, `10s`, `1.5s` or `500ms`.
fn parse_age(text: &str) -> Option<Duration> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let seconds = number.parse::<f64>().ok()? * scale;
    (seconds.is_finite() && seconds > 0.0 && seconds < 1e9)
        .then(|| Duration::from_secs_f64(seconds))
}

/// `/status`: each database's state, last tick, last error, queues and consumers.
fn status(stats: &Stats) -> Value {
    let databases: serde_json::Map<String, Value> = stats.with_databases(|dbs| {
        dbs.iter()
            .map(|(name, s)| (name.clone(), database(s)))
            .collect()
    });
    json!({
        "version": crate::VERSION,
        "ready": stats.discovered(),
        "tasks": stats.tasks(),
        "databases": databases,
    })
}

fn database(s: &DbStatus) -> Value {
    json!({
        "state": s.state.as_str(),
        "last_tick": s.last_tick_wall.map(unix),
        "seconds_since_tick": s.last_tick.map(|t| t.elapsed().as_secs_f64()),
        "leader": s.leader,
        "connections": s.connections,
        "ticker_calls": s.ticker_calls.iter().map(|(k, v)| (k.as_str(), *v)).collect::<BTreeMap<_, _>>(),
        "errors": s.errors.values().sum::<u64>(),
        "last_error": s.last_error.as_ref().map(|e| json!({
            "job": e.job.as_str(), "sqlstate": e.sqlstate, "message": e.message, "at": unix(e.at),
        })),
        "queues": s.queues.iter().map(|q| json!({
            "name": q.name, "ticker_lag_seconds": q.ticker_lag,
            "idle_period_seconds": q.idle_period, "new_events": q.new_events,
            "events_total": q.events_total, "last_rotation": q.last_rotation, "paused": q.paused,
        })).collect::<Vec<_>>(),
        "consumers": s.consumers.iter().map(|c| json!({
            "queue": c.queue, "name": c.name, "lag_seconds": c.lag,
            "last_seen_seconds": c.last_seen, "pending_events": c.pending_events,
        })).collect::<Vec<_>>(),
        "queue_stats_at": s.queue_stats_at.map(unix),
        "foreign_ticker": s.foreign_ticker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// max_tick_age takes seconds with or without a unit, and milliseconds.
    #[test]
    fn ages() {
        assert_eq!(parse_age("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_age("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_age("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_age("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "s", "-1", "0", "abc", "1e99", "NaN", "infs"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }
}
