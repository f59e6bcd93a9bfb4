//! Time: fixed-rate periods and capped backoff, the only two ways this daemon waits.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// A fixed-rate schedule: ticks every `period` measured start to start, so a slow call
/// does not push every later call back. After a stall, missed ticks are skipped rather
/// than fired in a burst. The first tick is immediate.
pub struct Every {
    period: Duration,
    interval: Interval,
}

impl Every {
    pub fn new(period: Duration) -> Every {
        Every {
            period,
            interval: skipping(tokio::time::interval(period)),
        }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        self.interval.tick().await;
    }

    /// Changes the period (after a reload) without losing the phase more than once.
    pub fn set_period(&mut self, period: Duration) {
        if period == self.period {
            return;
        }
        self.period = period;
        self.interval = skipping(tokio::time::interval_at(Instant::now() + period, period));
    }
}

fn skipping(mut interval: Interval) -> Interval {
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    interval
}

/// Reconnect delays: 100 ms doubling up to 2 s, so a restarted server is ticking again
/// within about 2 s of accepting connections (pgqd 3.5 waits a fixed 60 s); other
/// capped doublings (looking again at something new) use [`Backoff::between`].
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(2);

    pub fn new() -> Backoff {
        Backoff::between(Self::FIRST, Self::MAX)
    }

    /// Delays from `first` doubling up to `max`.
    pub fn between(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the following one doubles, capped at the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// A new cap (a reloaded period); the delays so far stand.
    pub fn set_max(&mut self, max: Duration) {
        self.max = max;
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// A few missed ticks: three ticker periods, but at least `floor`. The one rule behind
/// `/healthz`'s default tick age, the leader session's idle limit and `--status`'s
/// shortest expected gap between ticks.
pub fn three_periods(ticker_period: Duration, floor: Duration) -> Duration {
    (ticker_period * 3).max(floor)
}

/// The spacing of the ticker calls: `ticker_period` and 0.2 % more. pgq ticks a queue
/// once `now() - tick_time` is no longer below `ticker_max_lag` (3 s by default) or
/// `ticker_idle_period`, whole numbers of periods. With calls exactly a period apart
/// the difference at the call that should tick lands within a millisecond of the
/// threshold and falls short about half the time, so that tick came one period late
/// (every 4 s instead of 3 at the defaults). 0.2 % is 6 ms over 3 s: more than the
/// calls' jitter. pgqd 3.5's calls drift later by their own duration, about as much
/// (0.998 calls a second in the benchmark).
pub fn ticker_spacing(ticker_period: Duration) -> Duration {
    ticker_period + ticker_period / 500
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Spreads `period` over 90-100 % by a stable hash of `key`, so that a thousand
/// databases started together do not all reconnect in the same second.
#[cfg(test)]
pub fn spread(period: Duration, key: &str) -> Duration {
    period.mul_f64(spread_share(key))
}

/// The share of a period (0.9 to 1.0) that [`spread`] gives `key`: a stable hash, so
/// a database keeps its share across restarts of the daemon.
pub fn spread_share(key: &str) -> f64 {
    0.9 + 0.1 * phase(key)
}

/// Where in a period (0 to 0.999) `key`'s first round falls: a stable hash, so that a
/// thousand databases do not open their maintenance connections in the same second,
/// and each keeps its place across restarts.
pub fn phase(key: &str) -> f64 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % 1000) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backoff doubles from 100 ms and stays at 2 s; reset starts over.
    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    /// Spread stays within 90-100 % of the period and differs between keys.
    #[test]
    fn spread_range() {
        let period = Duration::from_secs(3600);
        let values: Vec<Duration> = (0..50).map(|i| spread(period, &format!("db{i}"))).collect();
        assert!(
            values
                .iter()
                .all(|v| *v >= period.mul_f64(0.9) && *v <= period)
        );
        assert!(values.iter().any(|v| *v != values[0]));
        assert_eq!(spread(period, "x"), spread(period, "x"));
    }

    /// Fixed rate: a slow turn does not delay the following ticks' schedule.
    #[tokio::test(start_paused = true)]
    async fn fixed_rate() {
        let start = Instant::now();
        let mut every = Every::new(Duration::from_secs(1));
        every.tick().await; // immediate
        tokio::time::sleep(Duration::from_millis(700)).await; // a slow call
        every.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        every.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
