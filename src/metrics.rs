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

type Dbs = std::collections::BTreeMap<String, DbStatus>;

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.with_databases(|dbs| encode_all(&mut encoder, dbs))
    }
}

fn encode_all(e: &mut DescriptorEncoder, dbs: &Dbs) -> Result<(), std::fmt::Error> {
    build_info(e)?;
    states(e, dbs)?;
    per_db_gauge(
        e,
        dbs,
        "pgqd_last_tick_timestamp_seconds",
        "When the last successful ticker call of the database ended (Unix time), or, before its first, when this instance began to expect one (task start, pgq installed, promotion); only for the databases this instance should tick, so a demoted or led database does not look stalled",
        |s| s.unticked_since_wall().map(unix),
    )?;
    per_db_labelled(
        e,
        dbs,
        "pgqd_ticker_calls",
        "Ticker calls by result: ok, fallback (queue by queue), error, timeout",
        "result",
        |s| {
            s.ticker_calls
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect()
        },
    )?;
    per_db_labelled(
        e,
        dbs,
        "pgqd_maint_operations",
        "Maintenance operations by result: ok, error",
        "result",
        |s| {
            s.maint_operations
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect()
        },
    )?;
    per_db_counter(
        e,
        dbs,
        "pgqd_maint_rounds",
        "Completed maintenance rounds (pgqd's stats line counts them as maint)",
        |s| s.maint_rounds,
    )?;
    per_db_counter(
        e,
        dbs,
        "pgqd_retry_events",
        "Events moved back into their queue by pgq.maint_retry_events()",
        |s| s.retry_events,
    )?;
    errors(e, dbs)?;
    per_db_counter(
        e,
        dbs,
        "pgqd_outages",
        "Runs of failures to reach the database",
        |s| s.outages,
    )?;
    per_db_gauge(
        e,
        dbs,
        "pgqd_connections",
        "Connections this pgqd holds to the database",
        |s| Some(s.connections as f64),
    )?;
    per_db_gauge(
        e,
        dbs,
        "pgqd_foreign_ticker",
        "1 while another client (not holding the leader lock: a pgqd 3.5, a cron job) calls pgq.ticker() in the database, else 0",
        |s| Some(f64::from(u8::from(s.foreign_ticker.is_some()))),
    )?;
    per_db_gauge(
        e,
        dbs,
        "pgqd_leader",
        "1 when this instance holds the database's leader lock, 0 when another does",
        |s| s.leader.map(|l| f64::from(u8::from(l))),
    )?;
    per_db_gauge(
        e,
        dbs,
        "pgqd_queue_stats_timestamp_seconds",
        "When the queue figures of the database were last read (Unix time)",
        |s| s.queue_stats_at.map(unix),
    )?;
    queue_gauge(
        e,
        dbs,
        "pgq_queue_ticker_lag_seconds",
        "Time since the queue's last tick",
        |q| q.ticker_lag,
    )?;
    queue_gauge(
        e,
        dbs,
        "pgq_queue_ticker_idle_period_seconds",
        "The queue's ticker_idle_period: the longest expected gap between ticks",
        |q| q.idle_period,
    )?;
    queue_gauge(
        e,
        dbs,
        "pgq_queue_new_events",
        "Events inserted since the queue's last tick",
        |q| q.new_events.map(|v| v as f64),
    )?;
    queue_counter(e, dbs)?;
    queue_gauge(
        e,
        dbs,
        "pgq_queue_last_rotation_timestamp_seconds",
        "When the queue's event tables were last rotated (Unix time)",
        |q| q.last_rotation,
    )?;
    queue_gauge(
        e,
        dbs,
        "pgq_queue_ticker_paused",
        "1 when the queue's ticker is paused",
        |q| Some(f64::from(u8::from(q.paused))),
    )?;
    consumer_gauge(
        e,
        dbs,
        "pgq_consumer_lag_seconds",
        "Age of the last tick the consumer has finished",
        |c| c.lag,
    )?;
    consumer_gauge(
        e,
        dbs,
        "pgq_consumer_last_seen_seconds",
        "Time since the consumer last finished a batch",
        |c| c.last_seen,
    )?;
    consumer_gauge(
        e,
        dbs,
        "pgq_consumer_pending_events",
        "Events the consumer has not read yet",
        |c| c.pending_events.map(|v| v as f64),
    )?;
    Ok(())
}

fn build_info(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(
        "pgqd_build_info",
        "The running pgqd's version",
        None,
        MetricType::Gauge,
    )?;
    m.encode_family(&[("version", crate::VERSION)])?
        .encode_gauge(&1i64)
}

fn states(e: &mut DescriptorEncoder, dbs: &Dbs) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(
        "pgqd_databases",
        "Databases by the state of their task",
        None,
        MetricType::Gauge,
    )?;
    for state in DbState::ALL {
        let count = dbs.values().filter(|s| s.state == state).count() as i64;
        m.encode_family(&[("state", state.as_str())])?
            .encode_gauge(&count)?;
    }
    Ok(())
}

fn per_db_gauge(
    e: &mut DescriptorEncoder,
    dbs: &Dbs,
    name: &str,
    help: &str,
    value: impl Fn(&DbStatus) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (db, status) in dbs {
        if let Some(v) = value(status) {
            m.encode_family(&[("datname", Escaped(db))])?
                .encode_gauge(&v)?;
        }
    }
    Ok(())
}

fn per_db_counter(
    e: &mut DescriptorEncoder,
    dbs: &Dbs,
    name: &str,
    help: &str,
    value: impl Fn(&DbStatus) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (db, status) in dbs {
        counter(&mut m, &[("datname", Escaped(db))], value(status))?;
    }
    Ok(())
}

fn per_db_labelled(
    e: &mut DescriptorEncoder,
    dbs: &Dbs,
    name: &str,
    help: &str,
    label: &str,
    values: impl Fn(&DbStatus) -> Vec<(String, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (db, status) in dbs {
        for (key, v) in values(status) {
            counter(
                &mut m,
                &[("datname", Escaped(db)), (label, Escaped(&key))],
                v,
            )?;
        }
    }
    Ok(())
}

fn errors(e: &mut DescriptorEncoder, dbs: &Dbs) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(
        "pgqd_errors",
        "Errors by task (the job: probe, ticker, retry, maint, queue_stats; `job` is Prometheus' own label) and SQLSTATE (empty when the server sent none)",
        None,
        MetricType::Counter,
    )?;
    for (db, status) in dbs {
        for ((job, code), v) in &status.errors {
            counter(
                &mut m,
                &[
                    ("datname", Escaped(db)),
                    ("task", Escaped(job.as_str())),
                    ("sqlstate", Escaped(code)),
                ],
                *v,
            )?;
        }
    }
    Ok(())
}

fn queue_gauge(
    e: &mut DescriptorEncoder,
    dbs: &Dbs,
    name: &str,
    help: &str,
    value: impl Fn(&QueueStats) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (db, status) in dbs {
        for q in &status.queues {
            if let Some(v) = value(q) {
                m.encode_family(&[("datname", Escaped(db)), ("queue", Escaped(&q.name))])?
                    .encode_gauge(&v)?;
            }
        }
    }
    Ok(())
}

fn queue_counter(e: &mut DescriptorEncoder, dbs: &Dbs) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(
        "pgq_queue_events",
        "Events inserted into the queue since it was created (its event sequence)",
        None,
        MetricType::Counter,
    )?;
    for (db, status) in dbs {
        for q in &status.queues {
            if let Some(v) = q.events_total {
                counter(
                    &mut m,
                    &[("datname", Escaped(db)), ("queue", Escaped(&q.name))],
                    v.max(0) as u64,
                )?;
            }
        }
    }
    Ok(())
}

fn consumer_gauge(
    e: &mut DescriptorEncoder,
    dbs: &Dbs,
    name: &str,
    help: &str,
    value: impl Fn(&ConsumerStats) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (db, status) in dbs {
        for c in &status.consumers {
            if let Some(v) = value(c) {
                let labels = [
                    ("datname", Escaped(db)),
                    ("queue", Escaped(&c.queue)),
                    ("consumer", Escaped(&c.name)),
                ];
                m.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
    }
    Ok(())
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
