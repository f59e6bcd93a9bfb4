//! The Prometheus metrics: read from [`Stats`] at scrape time (never a query per
//! scrape), so the series of a database, queue or consumer that is gone disappear.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::stats::{ConsumerStats, DbState, DbStatus, QueueStats, Stats, unix};

/// The registry served at `/metrics`.
pub fn registry(stats: Arc<Stats>) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "pgqd_ticker_call_duration_seconds",
        "How long pgq.ticker() calls take, all databases together",
        stats.ticker_seconds.clone(),
    );
    registry.register_collector(Box::new(StatsCollector(stats)));
    registry
}

/// The registry's text, in the OpenMetrics format Prometheus scrapes.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

type Dbs<'a> = crate::stats::Databases<'a>;

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.with_databases(|dbs| encode_all(&mut encoder, dbs))
    }
}

/// One metric family, as `/metrics` shows it: the name (a counter's without its
/// `_total`), the help text, the type, and its series read from the databases'
/// status. Every family pgqd exports (but the ticker call histogram, a metric of its
/// own) is a row of [`FAMILIES`]; `docs/monitoring.md` lists the same rows, checked
/// by a test.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    series: fn(Dbs<'_>) -> Vec<Series<'_>>,
}

/// One series of a family: its labels and its value.
struct Series<'a> {
    labels: Vec<(&'static str, &'a str)>,
    value: Value,
}

#[derive(Clone, Copy)]
enum Value {
    Gauge(f64),
    /// A gauge that counts, shown as an integer.
    Count(i64),
    Counter(u64),
}

const GAUGE: MetricType = MetricType::Gauge;
const COUNTER: MetricType = MetricType::Counter;

/// The families, in the order `/metrics` shows them.
const FAMILIES: &[Family] = &[
    Family {
        name: "pgqd_build_info",
        help: "The running pgqd's version",
        kind: GAUGE,
        series: |_| {
            vec![Series {
                labels: vec![("version", crate::VERSION)],
                value: Value::Count(1),
            }]
        },
    },
    Family {
        name: "pgqd_databases",
        help: "Databases by the state of their task",
        kind: GAUGE,
        series: |dbs| {
            (DbState::ALL.iter())
                .map(|state| Series {
                    labels: vec![("state", state.as_str())],
                    value: Value::Count(dbs.values().filter(|s| s.state == *state).count() as i64),
                })
                .collect()
        },
    },
    Family {
        name: "pgqd_last_tick_timestamp_seconds",
        help: "When the last successful ticker call of the database ended (Unix time), or, before its first, when this instance began to expect one (task start, pgq installed, promotion); only for the databases this instance should tick, so a demoted or led database does not look stalled",
        kind: GAUGE,
        series: |dbs| {
            per_db(dbs, |s| {
                s.unticked_since_wall().map(|t| Value::Gauge(unix(t)))
            })
        },
    },
    Family {
        name: "pgqd_ticker_calls",
        help: "Ticker calls by result: ok, fallback (queue by queue), error, timeout",
        kind: COUNTER,
        series: |dbs| {
            per_db_by(dbs, |s| {
                (s.ticker_calls.iter())
                    .map(|(result, n)| (vec![("result", result.as_str())], *n))
                    .collect()
            })
        },
    },
    Family {
        name: "pgqd_maint_operations",
        help: "Maintenance operations by result: ok, error",
        kind: COUNTER,
        series: |dbs| {
            per_db_by(dbs, |s| {
                (s.maint_operations.iter())
                    .map(|(result, n)| (vec![("result", result.as_str())], *n))
                    .collect()
            })
        },
    },
    Family {
        name: "pgqd_maint_rounds",
        help: "Completed maintenance rounds (pgqd's stats line counts them as maint)",
        kind: COUNTER,
        series: |dbs| per_db(dbs, |s| Some(Value::Counter(s.maint_rounds))),
    },
    Family {
        name: "pgqd_retry_events",
        help: "Events moved back into their queue by pgq.maint_retry_events()",
        kind: COUNTER,
        series: |dbs| per_db(dbs, |s| Some(Value::Counter(s.retry_events))),
    },
    Family {
        name: "pgqd_errors",
        help: "Errors by task (the job: probe, ticker, retry, maint, queue_stats, watch; `job` is Prometheus' own label) and SQLSTATE (empty when the server sent none)",
        kind: COUNTER,
        series: |dbs| {
            per_db_by(dbs, |s| {
                (s.errors.iter())
                    .map(|((job, code), n)| {
                        (
                            vec![("task", job.as_str()), ("sqlstate", code.as_str())],
                            *n,
                        )
                    })
                    .collect()
            })
        },
    },
    Family {
        name: "pgqd_outages",
        help: "Runs of failures to reach the database",
        kind: COUNTER,
        series: |dbs| per_db(dbs, |s| Some(Value::Counter(s.outages))),
    },
    Family {
        name: "pgqd_connections",
        help: "Connections this pgqd holds to the database",
        kind: GAUGE,
        series: |dbs| per_db(dbs, |s| Some(Value::Gauge(s.connections as f64))),
    },
    Family {
        name: "pgqd_foreign_ticker",
        help: "1 while another client (not holding the leader lock: a pgqd 3.5, a cron job) calls pgq.ticker() in the database, else 0",
        kind: GAUGE,
        series: |dbs| per_db(dbs, |s| Some(flag(s.foreign_ticker.is_some()))),
    },
    Family {
        name: "pgqd_leader",
        help: "1 when this instance holds the database's leader lock, 0 when another does",
        kind: GAUGE,
        series: |dbs| per_db(dbs, |s| s.leader.map(flag)),
    },
    Family {
        name: "pgqd_queue_stats_timestamp_seconds",
        help: "When the queue figures of the database were last read (Unix time)",
        kind: GAUGE,
        series: |dbs| per_db(dbs, |s| s.queue_stats_at.map(|t| Value::Gauge(unix(t)))),
    },
    Family {
        name: "pgq_queue_ticker_lag_seconds",
        help: "Time since the queue's last tick",
        kind: GAUGE,
        series: |dbs| per_queue(dbs, |q| q.ticker_lag.map(Value::Gauge)),
    },
    Family {
        name: "pgq_queue_ticker_idle_period_seconds",
        help: "The queue's ticker_idle_period: the longest expected gap between ticks",
        kind: GAUGE,
        series: |dbs| per_queue(dbs, |q| q.idle_period.map(Value::Gauge)),
    },
    Family {
        name: "pgq_queue_new_events",
        help: "Events inserted since the queue's last tick",
        kind: GAUGE,
        series: |dbs| per_queue(dbs, |q| q.new_events.map(|v| Value::Gauge(v as f64))),
    },
    Family {
        name: "pgq_queue_events",
        help: "Events inserted into the queue since it was created (its event sequence)",
        kind: COUNTER,
        series: |dbs| {
            per_queue(dbs, |q| {
                q.events_total.map(|v| Value::Counter(v.max(0) as u64))
            })
        },
    },
    Family {
        name: "pgq_queue_last_rotation_timestamp_seconds",
        help: "When the queue's event tables were last rotated (Unix time)",
        kind: GAUGE,
        series: |dbs| per_queue(dbs, |q| q.last_rotation.map(Value::Gauge)),
    },
    Family {
        name: "pgq_queue_ticker_paused",
        help: "1 when the queue's ticker is paused",
        kind: GAUGE,
        series: |dbs| per_queue(dbs, |q| Some(flag(q.paused))),
    },
    Family {
        name: "pgq_consumer_lag_seconds",
        help: "Age of the last tick the consumer has finished",
        kind: GAUGE,
        series: |dbs| per_consumer(dbs, |c| c.lag.map(Value::Gauge)),
    },
    Family {
        name: "pgq_consumer_last_seen_seconds",
        help: "Time since the consumer last finished a batch",
        kind: GAUGE,
        series: |dbs| per_consumer(dbs, |c| c.last_seen.map(Value::Gauge)),
    },
    Family {
        name: "pgq_consumer_pending_events",
        help: "Events the consumer has not read yet",
        kind: GAUGE,
        series: |dbs| per_consumer(dbs, |c| c.pending_events.map(|v| Value::Gauge(v as f64))),
    },
];

fn encode_all(e: &mut DescriptorEncoder, dbs: Dbs<'_>) -> Result<(), std::fmt::Error> {
    for family in FAMILIES {
        let mut m = e.encode_descriptor(family.name, family.help, None, family.kind)?;
        for series in (family.series)(dbs) {
            let labels: Vec<(&str, Escaped)> = series
                .labels
                .iter()
                .map(|(k, v)| (*k, Escaped(v)))
                .collect();
            match series.value {
                Value::Gauge(v) => m.encode_family(&labels)?.encode_gauge(&v)?,
                Value::Count(v) => m.encode_family(&labels)?.encode_gauge(&v)?,
                Value::Counter(v) => counter(&mut m, &labels, v)?,
            }
        }
    }
    Ok(())
}

/// 1 or 0.
fn flag(on: bool) -> Value {
    Value::Gauge(f64::from(u8::from(on)))
}

/// One series per database with a value.
fn per_db(dbs: Dbs<'_>, value: impl Fn(&DbStatus) -> Option<Value>) -> Vec<Series<'_>> {
    (dbs.iter())
        .filter_map(|(db, s)| {
            Some(Series {
                labels: vec![("datname", db.as_str())],
                value: value(s)?,
            })
        })
        .collect()
}

/// Counters per database and further labels.
fn per_db_by<'a>(
    dbs: Dbs<'a>,
    values: impl Fn(&'a DbStatus) -> Vec<(Vec<(&'static str, &'a str)>, u64)>,
) -> Vec<Series<'a>> {
    let mut out = Vec::new();
    for (db, s) in dbs.iter() {
        for (labels, n) in values(s) {
            let mut all = vec![("datname", db.as_str())];
            all.extend(labels);
            out.push(Series {
                labels: all,
                value: Value::Counter(n),
            });
        }
    }
    out
}

/// One series per queue with a value.
fn per_queue(dbs: Dbs<'_>, value: impl Fn(&QueueStats) -> Option<Value>) -> Vec<Series<'_>> {
    let mut out = Vec::new();
    for (db, s) in dbs.iter() {
        for q in &s.queues {
            if let Some(value) = value(q) {
                let labels = vec![("datname", db.as_str()), ("queue", q.name.as_str())];
                out.push(Series { labels, value });
            }
        }
    }
    out
}

/// One series per consumer with a value.
fn per_consumer(dbs: Dbs<'_>, value: impl Fn(&ConsumerStats) -> Option<Value>) -> Vec<Series<'_>> {
    let mut out = Vec::new();
    for (db, s) in dbs.iter() {
        for c in &s.consumers {
            if let Some(value) = value(c) {
                let labels = vec![
                    ("datname", db.as_str()),
                    ("queue", c.queue.as_str()),
                    ("consumer", c.name.as_str()),
                ];
                out.push(Series { labels, value });
            }
        }
    }
    out
}

fn counter(
    m: &mut MetricEncoder,
    labels: &[(&str, Escaped)],
    value: u64,
) -> Result<(), std::fmt::Error> {
    let no_exemplar: Option<
        &prometheus_client::metrics::exemplar::Exemplar<[(&str, &str); 0], u64>,
    > = None;
    m.encode_family(&labels)?
        .encode_counter(&value, no_exemplar)
}

/// A label value escaped as the text format requires (`\`, `"`, newline): database,
/// queue and consumer names may hold any of them.
#[derive(Debug, Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}
