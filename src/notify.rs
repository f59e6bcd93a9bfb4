//! systemd readiness notifications (`NOTIFY_SOCKET`); silent when not under systemd.

/// The config is loaded and the first database listing is done.
pub fn ready() {
    send(&[sd_notify::NotifyState::Ready]);
}

/// A reload has started.
pub fn reloading() {
    send(&[sd_notify::NotifyState::Reloading]);
}

/// Shutdown has started.
pub fn stopping() {
    send(&[sd_notify::NotifyState::Stopping]);
}

fn send(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(states);
    }
}
