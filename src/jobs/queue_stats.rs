//! PgQ's own figures for the metrics and `/status`: each queue's ticker lag, idle
//! period, new and total events, last rotation and pause flag, and each consumer's
//! lag, last seen and pending events.
//!
//! Read with plain SQL over pgq's tables (select is granted to public), computing what
//! `pgq.get_queue_info()` and `pgq.get_consumer_info()` compute. Those are PL/pgSQL
//! functions calling further functions and a dynamic `select` per queue: on a session
//! that calls them every `queue_stats_period` they cost measurable server CPU and keep
//! their compiled code and plans in the backend (at 100 databases the benchmark measured
//! +0.7 s of server CPU a minute and +64 MB of backend memory). A statement here is
//! planned afresh each time and cached nowhere, so what it costs is mostly its
//! planning: each statement reads one table, with the ticks it needs looked up by
//! primary key in scalar subqueries (a join makes the planner weigh join orders and
//! read pgq.tick's statistics), and the queue-consumer join is done here. Both
//! statements go in one simple-protocol round trip (about 0.25 ms of server CPU a
//! reading back to back on a quiet host, against 0.9 ms for the joined statements
//! before; see the notes of docs/benchmarks-listener.md). In place, where a backend
//! reads once a period between ticker calls, a reading costs about 0.7 ms (1.8 ms the
//! first in a session; `bench/run.sh --reading-cost`): the planner's and executor's
//! code and data are no longer in the CPU's caches, and any statement reading a table
//! costs 0.2-0.4 ms there against 0.15 ms for `select 1`. That is why
//! `queue_stats_period` defaults to 60 s (Prometheus' default scrape interval): at 100
//! databases 0.07 s of server CPU a minute.

use std::sync::LazyLock;

use tokio_postgres::{SimpleQueryMessage, SimpleQueryRow};

use crate::pg::{PgError, Session};
use crate::stats::{ConsumerStats, QueueStats};

use super::Limits;

/// Per consumer, as `pgq.get_consumer_info()`: lag is the age of the consumer's last
/// tick, last seen the age of its last activity; pending events are computed from the
/// queue's latest tick read by [`QUEUES`]. Read first: both statements run in one
/// transaction (one `current_timestamp`) but each with its own snapshot, and a queue's
/// latest tick read after every consumer's tick is never older than one of them, so
/// pending events cannot come out negative. Ordered by consumer name; the queue
/// order is applied in [`join`].
const CONSUMERS: &str = "select sub_queue,
        (select co_name from pgq.consumer where co_id = sub_consumer),
        extract(epoch from current_timestamp - sub_active),
        (select array[extract(epoch from current_timestamp - tick_time), tick_event_seq]
           from pgq.tick where tick_queue = sub_queue and tick_id = sub_last_tick)
   from pgq.subscription
  order by 2";
/// Per queue, as `pgq.get_queue_info()`: the ticker lag is the age of the queue's
/// latest tick (one subquery reads its age and event sequence as an array: a second
/// subquery would cost as much planning again); new events are the event sequence's
/// value minus that tick's. The sequence is named as `pgq.seq_getval()` names it (split
/// at the first dot, each part quoted; without a dot, in `public`) but found with
/// `to_regclass`, so a missing sequence empties that queue's event figures instead of
/// failing every queue (pgq's functions fail). `pg_sequence_last_value()` is null
/// until the first event, when the value is still the latest tick's. Seconds as
/// numeric text, which parses to the same float8 as a cast would give.
const QUEUES: &str = "select queue_id, queue_name,
        (select array[extract(epoch from current_timestamp - tick_time), tick_event_seq]
           from pgq.tick where tick_queue = queue_id
          order by tick_queue desc, tick_id desc limit 1),
        extract(epoch from queue_ticker_idle_period),
        extract(epoch from queue_switch_time),
        queue_ticker_paused,
        seq is not null,
        pg_catalog.pg_sequence_last_value(seq)
   from pgq.queue,
        lateral (select pg_catalog.to_regclass(format('%I.%I',
            case when strpos(queue_event_seq, '.') > 0
                 then split_part(queue_event_seq, '.', 1) else 'public' end,
            substr(queue_event_seq, strpos(queue_event_seq, '.') + 1)))) s (seq)
  order by queue_name";
/// Both statements, sent as one simple-protocol query: one round trip, one implicit
/// transaction (an error or a cancel ends it; no transaction is left open).
static READING: LazyLock<String> = LazyLock::new(|| format!("{CONSUMERS};\n{QUEUES}"));

/// Reads the queues and consumers of the database `session` is connected to.
pub async fn collect(
    session: &Session,
    limits: &Limits<'_>,
) -> Result<(Vec<QueueStats>, Vec<ConsumerStats>), PgError> {
    let messages = session
        .execute_simple(&READING, limits.timeout, limits.shutdown)
        .await?;
    let sets = result_sets(&messages);
    let rows = |i: usize| sets.get(i).map_or(&[][..], Vec::as_slice);
    let consumers = rows(0).iter().filter_map(|r| ConsumerRow::read(r));
    let queues = rows(1).iter().map(|r| QueueRow::read(r)).collect();
    Ok(join(queues, consumers.collect()))
}

/// Reads the consumers of every queue.
pub async fn consumers(
    session: &Session,
    limits: &Limits<'_>,
) -> Result<Vec<ConsumerStats>, PgError> {
    Ok(collect(session, limits).await?.1)
}

/// A tick's age in seconds and its event sequence, from the statements'
/// `array[age, tick_event_seq]` (text such as `{12.345678,100}`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tick {
    age: Option<f64>,
    event_seq: Option<i64>,
}

impl Tick {
    fn parse(text: &str) -> Option<Tick> {
        let inner = text.strip_prefix('{')?.strip_suffix('}')?;
        let (age, event_seq) = inner.split_once(',')?;
        Some(Tick {
            age: age.parse().ok(),
            event_seq: event_seq.parse().ok(),
        })
    }
}

/// A row of [`QUEUES`]: the figures, with the queue's id and latest tick for the
/// consumers' join.
#[derive(Debug, Clone, Default)]
struct QueueRow {
    id: Option<i64>,
    top: Option<Tick>,
    stats: QueueStats,
}

impl QueueRow {
    fn read(row: &SimpleQueryRow) -> QueueRow {
        let top = text(row, 2).and_then(Tick::parse);
        let tick_seq = top.and_then(|t| t.event_seq);
        // Column 6 says whether the event sequence exists.
        let last_value = match text(row, 6) {
            Some("t") => number(row, 7).or(tick_seq),
            _ => None,
        };
        QueueRow {
            id: number(row, 0),
            top,
            stats: QueueStats {
                name: text(row, 1).unwrap_or_default().to_owned(),
                ticker_lag: top.and_then(|t| t.age),
                idle_period: number(row, 3),
                new_events: last_value.zip(tick_seq).and_then(|(v, t)| v.checked_sub(t)),
                events_total: last_value,
                last_rotation: number(row, 4),
                paused: text(row, 5) == Some("t"),
            },
        }
    }
}

/// A row of [`CONSUMERS`]; `None` for a consumer without a name (deleted meanwhile).
#[derive(Debug, Clone, Default)]
struct ConsumerRow {
    queue_id: Option<i64>,
    tick: Option<Tick>,
    stats: ConsumerStats,
}

impl ConsumerRow {
    fn read(row: &SimpleQueryRow) -> Option<ConsumerRow> {
        let tick = text(row, 3).and_then(Tick::parse);
        Some(ConsumerRow {
            queue_id: number(row, 0),
            tick,
            stats: ConsumerStats {
                name: text(row, 1)?.to_owned(),
                lag: tick.and_then(|t| t.age),
                last_seen: number(row, 2),
                ..ConsumerStats::default()
            },
        })
    }
}

/// Gives each consumer its queue's name and pending events (the queue's latest tick's
/// event sequence minus that of the consumer's tick, as `pgq.get_consumer_info()`),
/// ordered by queue then consumer name as pgq's function orders them. A consumer
/// whose queue was not read (dropped meanwhile) is left out, as pgq's join leaves it.
fn join(
    queues: Vec<QueueRow>,
    consumers: Vec<ConsumerRow>,
) -> (Vec<QueueStats>, Vec<ConsumerStats>) {
    let mut joined: Vec<(usize, ConsumerStats)> = consumers
        .into_iter()
        .filter_map(|c| {
            let at = queues
                .iter()
                .position(|q| q.id.is_some() && q.id == c.queue_id)?;
            let top = queues[at].top.and_then(|t| t.event_seq);
            let own = c.tick.and_then(|t| t.event_seq);
            let pending = top.zip(own).and_then(|(top, own)| top.checked_sub(own));
            let queue = queues[at].stats.name.clone();
            Some((
                at,
                ConsumerStats {
                    queue,
                    pending_events: pending,
                    ..c.stats
                },
            ))
        })
        .collect();
    // Stable: consumers of one queue keep the statement's order by name.
    joined.sort_by_key(|(at, _)| *at);
    let queues = queues.into_iter().map(|q| q.stats).collect();
    (queues, joined.into_iter().map(|(_, c)| c).collect())
}

/// The rows of each statement of a simple-protocol query, in order.
fn result_sets(messages: &[SimpleQueryMessage]) -> Vec<Vec<&SimpleQueryRow>> {
    let (mut sets, mut rows) = (Vec::new(), Vec::new());
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(row),
            SimpleQueryMessage::CommandComplete(_) => sets.push(std::mem::take(&mut rows)),
            _ => {}
        }
    }
    sets
}

/// A column's text; `None` for null (or a column the row does not have).
fn text(row: &SimpleQueryRow, index: usize) -> Option<&str> {
    row.try_get(index).ok().flatten()
}

/// A column's number; `None` for null or text that is not one.
fn number<T: std::str::FromStr>(row: &SimpleQueryRow, index: usize) -> Option<T> {
    text(row, index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: i64, name: &str, top: Option<i64>) -> QueueRow {
        QueueRow {
            id: Some(id),
            top: top.map(|seq| Tick {
                age: Some(1.0),
                event_seq: Some(seq),
            }),
            stats: QueueStats {
                name: name.into(),
                ..QueueStats::default()
            },
        }
    }

    fn consumer(queue_id: i64, name: &str, seq: Option<i64>) -> ConsumerRow {
        ConsumerRow {
            queue_id: Some(queue_id),
            tick: seq.map(|seq| Tick {
                age: Some(2.0),
                event_seq: Some(seq),
            }),
            stats: ConsumerStats {
                name: name.into(),
                lag: seq.map(|_| 2.0),
                ..ConsumerStats::default()
            },
        }
    }

    /// The array text of a tick reads as its age and event sequence; anything else
    /// (null elements, not an array) as nothing rather than a wrong number.
    #[test]
    fn tick_arrays_parse() {
        let tick = Tick::parse("{12.345678,100}").unwrap();
        assert_eq!((tick.age, tick.event_seq), (Some(12.345678), Some(100)));
        assert_eq!(Tick::parse("{NULL,7}").unwrap().age, None);
        assert_eq!(Tick::parse("12,7"), None);
        assert_eq!(Tick::parse("{12}"), None);
    }

    /// Consumers get their queue's name and pending events, come out in the queues'
    /// order (each queue's keeping the statement's order by name), and a consumer of
    /// a queue not read is left out.
    #[test]
    fn consumers_join_their_queues() {
        let queues = vec![queue(2, "a", Some(50)), queue(1, "b", None)];
        let consumers = vec![
            consumer(1, "x", Some(3)),
            consumer(2, "y", Some(20)),
            consumer(9, "gone", Some(1)),
            consumer(2, "z", None),
        ];
        let (queues, consumers) = join(queues, consumers);
        assert_eq!(queues.len(), 2);
        let seen: Vec<(&str, &str, Option<i64>, Option<f64>)> = consumers
            .iter()
            .map(|c| (c.queue.as_str(), c.name.as_str(), c.pending_events, c.lag))
            .collect();
        assert_eq!(
            seen,
            [
                ("a", "y", Some(30), Some(2.0)),
                ("a", "z", None, None),
                ("b", "x", None, Some(2.0)),
            ]
        );
    }
}
