//! PgQ's own figures for the metrics and `/status`: each queue's ticker lag, idle
//! period, new and total events, last rotation and pause flag, and each consumer's
//! lag, last seen and pending events. Read-only functions granted to public.

use crate::pg::{PgError, Session};
use crate::stats::{ConsumerStats, QueueStats};

use super::Limits;

/// Seconds as float8 so that one row decodes without interval handling.
/// `pgq.seq_getval()` reads the event sequence without advancing it.
const QUEUES: &str = "select i.queue_name,
        extract(epoch from i.ticker_lag)::float8,
        extract(epoch from i.queue_ticker_idle_period)::float8,
        i.ev_new,
        pgq.seq_getval(q.queue_event_seq),
        extract(epoch from i.queue_switch_time)::float8,
        i.queue_ticker_paused
   from pgq.get_queue_info() i join pgq.queue q on q.queue_name = i.queue_name
  order by 1";
const CONSUMERS: &str = "select queue_name, consumer_name,
        extract(epoch from lag)::float8,
        extract(epoch from last_seen)::float8,
        pending_events
   from pgq.get_consumer_info()
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
