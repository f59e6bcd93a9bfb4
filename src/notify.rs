//! systemd notifications (`NOTIFY_SOCKET`): readiness, reload, stop, and the watchdog
//! ping while ticking is healthy. Silent when not started by systemd.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::stats::{DbState, Stats};

/// The config is loaded and the first database listing is done.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A reload has started (systemd wants the monotonic time with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown has started.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(states);
    }
}

/// Pings the systemd watchdog (when `WATCHDOG_USEC` asks for it) at half its interval
/// for as long as ticking is healthy: a database that should be ticking has ticked
/// within `stale_after`. A wedged daemon stops pinging and systemd restarts it.
pub async fn watchdog(stats: Arc<Stats>, stale_after: Duration, shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut every = crate::schedule::Every::new(interval / 2);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if healthy(&stats, stale_after) {
            send(&[NotifyState::Watchdog]);
        }
    }
}

/// Healthy unless databases are in the ticking state and none has ticked lately.
fn healthy(stats: &Stats, stale_after: Duration) -> bool {
    let ticking = stats
        .databases()
        .values()
        .any(|s| s.state == DbState::Ticking);
    !ticking
        || stats
            .last_tick()
            .is_some_and(|t| t.elapsed() <= stale_after)
}
