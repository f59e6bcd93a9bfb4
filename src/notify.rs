//! systemd notifications (`NOTIFY_SOCKET`): readiness, reload, stop, and the watchdog
//! ping while the event loop runs. Silent when not started by systemd.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

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

/// A one-line summary of the daemon's state (`systemctl status` shows it).
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// Shutdown has started.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Whether systemd listens (the daemon was started with `NOTIFY_SOCKET`).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState]) {
    if enabled() {
        let _ = sd_notify::notify(states);
    }
}

/// Pings the systemd watchdog (when `WATCHDOG_USEC` asks for it) at half its interval
/// for as long as the daemon's event loop runs. It means "the process is not wedged",
/// never "every database ticks": a restart cannot fix a lock held on `pgq.tick` or a
/// server that is down, and that is what `/healthz` and the alert rules are for.
pub async fn watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut every = crate::schedule::Every::new(interval / 2);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        send(&[NotifyState::Watchdog]);
    }
}
