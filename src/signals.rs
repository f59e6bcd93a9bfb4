//! Signals: SIGINT stops gracefully, SIGTERM exits fast, SIGHUP reloads the config and
//! reopens the logs. SIGPIPE is already ignored by the Rust runtime, as pgqd does.

use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config;
use crate::logging::LogHandle;
use crate::notify;
use crate::supervisor::Control;

/// After SIGTERM, in-flight queries get this long to be cancelled server-side before
/// the process exits regardless.
const FAST_EXIT_GRACE: Duration = Duration::from_millis(500);

/// Handles signals until shutdown; owns what a reload needs.
pub struct SignalHandler {
    pub config_path: PathBuf,
    pub log: LogHandle,
    pub control: mpsc::Sender<Control>,
    pub shutdown: CancellationToken,
    /// Called just before a fast exit (removes the pidfile).
    pub on_fast_exit: Box<dyn Fn() + Send + Sync>,
}

impl SignalHandler {
    /// Installs the handlers now (inside the runtime, before any database work, so an
    /// early SIGHUP cannot kill the process) and returns the loop that serves them.
    pub fn install(self) -> std::io::Result<impl std::future::Future<Output = ()>> {
        let interrupt = signal(SignalKind::interrupt())?;
        let terminate = signal(SignalKind::terminate())?;
        let hangup = signal(SignalKind::hangup())?;
        Ok(self.run(interrupt, terminate, hangup))
    }

    async fn run(self, mut interrupt: Signal, mut terminate: Signal, mut hangup: Signal) {
        loop {
            tokio::select! {
                _ = interrupt.recv() => {
                    info!("Got SIGINT, shutting down");
                    self.shutdown.cancel();
                }
                _ = terminate.recv() => {
                    info!("Got SIGTERM, fast exit");
                    self.shutdown.cancel();
                    tokio::time::sleep(FAST_EXIT_GRACE).await;
                    (self.on_fast_exit)();
                    // Exit 0, not pgqd's 1: systemd and docker would record a failure.
                    std::process::exit(0);
                }
                _ = hangup.recv() => self.reload().await,
            }
        }
    }

    /// Reads the config again; an invalid one is logged and the old one kept running
    /// (pgqd 3.5 exits here). The pidfile setting is not changed by a reload.
    async fn reload(&self) {
        info!("Got SIGHUP, re-reading config");
        notify::reloading();
        let loaded = match config::load(&self.config_path) {
            Ok(loaded) => loaded,
            Err(e) => {
                error!("{e}; keeping the running config");
                // systemd has no "reload failed" message: READY=1 ends the reload, and
                // STATUS= says it failed until a reload works (systemctl status shows it).
                let _ = self
                    .control
                    .send(Control::ReloadFailed(e.to_string()))
                    .await;
                notify::ready();
                return;
            }
        };
        // The new sinks first, so the warnings reach a newly configured log file too.
        if let Err(e) = self.log.apply(&loaded.config) {
            error!("{e}; keeping the previous log destinations");
        }
        crate::logging::config_warnings(&loaded.warnings);
        let _ = self
            .control
            .send(Control::Reload(Box::new(loaded.config)))
            .await;
        info!("config reloaded");
    }
}
