//! The ticker clock: one timer per ticker spacing for the whole daemon, whose ticks
//! wake every database task on that spacing.
//!
//! With a timer of its own per database, each ticker call cost a timer's re-arming
//! and, on tokio's current-thread runtime, a write to the runtime's eventfd whenever
//! the new deadline came before the timer driver's next wake: measured 0.7 eventfd
//! writes, and the extra `epoll_wait` they cause, per call (strace, 10 databases at
//! ticker_period 0.1). One clock per spacing arms one timer per tick instant, and a
//! watch channel wakes the subscribers in the same turn of the runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// The clocks of one supervisor, by spacing. Cloned into every database task.
#[derive(Clone, Default)]
pub struct Clocks {
    running: Arc<Mutex<Running>>,
}

#[derive(Default)]
struct Running {
    /// The grid's origin, the first schedule's making: every clock ticks on multiples
    /// of its spacing since then, so the first database's first (immediate) tick is
    /// on the grid, and a new spacing after a reload keeps the databases on one instant.
    origin: Option<Instant>,
    clocks: HashMap<Duration, watch::Sender<u64>>,
}

impl Clocks {
    pub fn new() -> Clocks {
        Clocks::default()
    }

    /// A schedule on the clock of `spacing`: an immediate first tick, then the
    /// clock's. Must be called within the runtime (it may start the clock's task).
    pub fn every(&self, spacing: Duration) -> Ticks {
        Ticks {
            clocks: self.clone(),
            spacing,
            ticks: self.subscribe(spacing),
            immediate: true,
        }
    }

    /// A receiver of the clock of `spacing`, started if none runs; the receiver has
    /// seen the clock's latest tick.
    fn subscribe(&self, spacing: Duration) -> watch::Receiver<u64> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = running.clocks.get(&spacing) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(0);
        running.clocks.insert(spacing, sender.clone());
        let origin = *running.origin.get_or_insert_with(Instant::now);
        let start = next_on_grid(origin, spacing);
        tokio::spawn(self.clone().run(sender, spacing, start));
        receiver
    }

    /// Ticks on the grid until no schedule listens; missed ticks (a stalled runtime)
    /// are skipped rather than fired in a burst.
    async fn run(self, sender: watch::Sender<u64>, spacing: Duration, start: Instant) {
        let mut interval = tokio::time::interval_at(start, spacing);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = interval.tick() => sender.send_modify(|n| *n = n.wrapping_add(1)),
                () = sender.closed() => {
                    // Under the lock: a schedule made meanwhile has subscribed here.
                    let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
                    if sender.receiver_count() == 0 {
                        running.clocks.remove(&spacing);
                        return;
                    }
                }
            }
        }
    }
}

/// One database's ticker schedule on the shared clock.
pub struct Ticks {
    clocks: Clocks,
    spacing: Duration,
    ticks: watch::Receiver<u64>,
    /// The immediate first tick is still due.
    immediate: bool,
}

impl Ticks {
    /// Waits for the next tick. A tick that came while the task was busy (a call
    /// longer than the spacing) is returned at once, and only one such.
    pub async fn tick(&mut self) {
        if std::mem::take(&mut self.immediate) {
            self.ticks.mark_unchanged();
            return;
        }
        // `changed` marks the tick seen: a second tick missed while busy is not kept.
        if self.ticks.changed().await.is_err() {
            // The clock's task ended with the runtime: nothing ticks any more.
            std::future::pending::<()>().await;
        }
    }

    /// Marks the latest tick seen: its turn was taken another way (the ticker engine
    /// made the call, or gave the lane back at this tick for the task to turn now).
    pub fn mark_seen(&mut self) {
        self.immediate = false;
        self.ticks.mark_unchanged();
    }

    /// Moves to the clock of a new spacing (after a reload); its next tick is the
    /// first on the new grid.
    pub fn set_spacing(&mut self, spacing: Duration) {
        if spacing != self.spacing {
            self.spacing = spacing;
            self.ticks = self.clocks.subscribe(spacing);
        }
    }
}

/// The first multiple of `period` after `origin` that is later than now.
pub fn next_on_grid(origin: Instant, period: Duration) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let elapsed_ns = Instant::now().saturating_duration_since(origin).as_nanos();
    let next_ns = (elapsed_ns / period_ns + 1) * period_ns;
    origin + Duration::from_nanos(u64::try_from(next_ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two schedules tick at once, then on the clock's grid together; a slow turn
    /// gets one late tick at once, then the grid again; a new spacing keeps to the grid.
    #[tokio::test(start_paused = true)]
    async fn schedules_share_the_grid() {
        let clocks = Clocks::new();
        let origin = Instant::now();
        let mut a = clocks.every(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut b = clocks.every(Duration::from_secs(1));
        a.tick().await;
        b.tick().await;
        assert_eq!(origin.elapsed(), Duration::from_millis(300));
        a.tick().await;
        assert_eq!(origin.elapsed(), Duration::from_secs(1));
        b.tick().await; // the same tick
        assert_eq!(origin.elapsed(), Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(2500)).await; // a slow turn
        a.tick().await;
        assert_eq!(origin.elapsed(), Duration::from_millis(3500));
        a.tick().await;
        assert_eq!(origin.elapsed(), Duration::from_secs(4));
        a.set_spacing(Duration::from_millis(300));
        a.tick().await;
        assert_eq!(origin.elapsed(), Duration::from_millis(4200));
        assert_eq!(clocks.running.lock().unwrap().clocks.len(), 2);
    }

    /// A clock stops when its last schedule is gone, and starts again for a new one.
    #[tokio::test(start_paused = true)]
    async fn clock_stops_without_schedules() {
        let clocks = Clocks::new();
        let mut a = clocks.every(Duration::from_secs(1));
        a.tick().await;
        a.tick().await;
        drop(a);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(clocks.running.lock().unwrap().clocks.is_empty());
        let mut b = clocks.every(Duration::from_secs(1));
        b.tick().await;
        b.tick().await;
        assert_eq!(clocks.running.lock().unwrap().clocks.len(), 1);
    }
}
