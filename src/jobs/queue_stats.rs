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
//! planned afresh each time and cached nowhere.

use crate::pg::{PgError, Session};
use crate::stats::{ConsumerStats, QueueStats};

use super::Limits;

/// Per queue, as `pgq.get_queue_info()`: the ticker lag is the age of the queue's
/// latest tick; new events are the event sequence's value minus that tick's. The
/// sequence is named as `pgq.seq_getval()` names it (split at the first dot, each part
/// quoted; without a dot, in `public`) but found with `to_regclass`, so a missing
/// sequence empties that queue's event figures instead of failing every queue (pgq's
/// functions fail). `pg_sequence_last_value()` is null until the first event, when the
/// value is still the latest tick's. Seconds as float8: a row decodes without intervals.
const QUEUES: &str = "select q.queue_name,
        extract(epoch from current_timestamp - t.tick_time)::float8,
        extract(epoch from q.queue_ticker_idle_period)::float8,
        e.last_value - t.tick_event_seq,
        e.last_value,
        extract(epoch from q.queue_switch_time)::float8,
        q.queue_ticker_paused
   from pgq.queue q
   left join lateral (select tick_time, tick_event_seq from pgq.tick
                       where tick_queue = q.queue_id
                       order by tick_queue desc, tick_id desc limit 1) t on true
   cross join lateral (select pg_catalog.to_regclass(case
            when strpos(q.queue_event_seq, '.') > 0
            then quote_ident(split_part(q.queue_event_seq, '.', 1)) || '.'
                 || quote_ident(substr(q.queue_event_seq, strpos(q.queue_event_seq, '.') + 1))
            else 'public.' || quote_ident(q.queue_event_seq) end) as seq) s
   cross join lateral (select case when s.seq is not null
            then coalesce(pg_catalog.pg_sequence_last_value(s.seq), t.tick_event_seq)
            end as last_value) e
  order by 1";
/// Per consumer, as `pgq.get_consumer_info()`: lag is the age of the consumer's last
/// tick, last seen the age of its last activity, pending events the queue's latest
/// tick's event sequence minus that of the consumer's last tick.
const CONSUMERS: &str = "select q.queue_name, c.co_name,
        extract(epoch from current_timestamp - t.tick_time)::float8,
        extract(epoch from current_timestamp - s.sub_active)::float8,
        top.tick_event_seq - t.tick_event_seq
   from pgq.subscription s
   join pgq.queue q on q.queue_id = s.sub_queue
   join pgq.consumer c on c.co_id = s.sub_consumer
   left join pgq.tick t on t.tick_queue = s.sub_queue and t.tick_id = s.sub_last_tick
   left join lateral (select tick_event_seq from pgq.tick
                       where tick_queue = s.sub_queue
                       order by tick_queue desc, tick_id desc limit 1) top on true
  order by 1, 2";

/// Reads the queues and consumers of the database `session` is connected to.
pub async fn collect(
    session: &Session,
    limits: &Limits<'_>,
) -> Result<(Vec<QueueStats>, Vec<ConsumerStats>), PgError> {
    let queues = session
        .query(QUEUES, &[], limits.timeout, limits.shutdown)
        .await?
        .iter()
        .map(|r| QueueStats {
            name: r.try_get(0).unwrap_or_default(),
            ticker_lag: r.try_get(1).ok().flatten(),
            idle_period: r.try_get(2).ok().flatten(),
            new_events: r.try_get(3).ok().flatten(),
            events_total: r.try_get(4).ok().flatten(),
            last_rotation: r.try_get(5).ok().flatten(),
            paused: r.try_get(6).ok().flatten().unwrap_or(false),
        })
        .collect();
    Ok((queues, consumers(session, limits).await?))
}

/// Reads the consumers of every queue.
pub async fn consumers(
    session: &Session,
    limits: &Limits<'_>,
) -> Result<Vec<ConsumerStats>, PgError> {
    Ok(session
        .query(CONSUMERS, &[], limits.timeout, limits.shutdown)
        .await?
        .iter()
        .map(|r| ConsumerStats {
            queue: r.try_get(0).unwrap_or_default(),
            name: r.try_get(1).unwrap_or_default(),
            lag: r.try_get(2).ok().flatten(),
            last_seen: r.try_get(3).ok().flatten(),
            pending_events: r.try_get(4).ok().flatten(),
        })
        .collect())
}
