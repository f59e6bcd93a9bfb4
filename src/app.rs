//! What the binary does with its command line: informational switches, `--check`,
//! signalling a running daemon, or running one. Every path ends in an exit code.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{self, Command, UsageError};
use crate::config::{self, Loaded, Origin};

/// The sample configuration printed by `--ini`; the same file ships as config/pgqd.ini.
pub const SAMPLE_INI: &str = include_str!("../config/pgqd.ini");

/// Runs the command line `args` (program name first) and returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    match cli::parse(args) {
        Ok(command) => dispatch(command),
        Err(UsageError::BadSwitch(reason)) => {
            eprintln!("pgqd: {reason}");
            print!("bad switch: {}", cli::USAGE);
            ExitCode::FAILURE
        }
        Err(UsageError::NeedsConfig) => {
            eprintln!("pgqd requires config file");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Help => print!("{}", cli::USAGE),
        Command::Version => println!("pgqd version {}", crate::VERSION),
        Command::Ini => print!("{SAMPLE_INI}"),
        Command::Check { config } => return check(&config),
        Command::Status { config, json } => return crate::status::report(&config, json),
        Command::Healthcheck { config, path } => {
            return crate::status::healthcheck(&config, path);
        }
        Command::Signal { config, signal } => {
            return crate::daemon::signal_running(&config, signal);
        }
        Command::Run { config, options } => return crate::daemon::run(&config, options),
    }
    ExitCode::SUCCESS
}

/// `--check`: load and validate (base_connstr included, without connecting; the log
/// and pid paths as start-up will use them), print warnings and the effective
/// settings, each with where it came from.
fn check(path: &Path) -> ExitCode {
    let Loaded {
        config,
        warnings,
        origins,
    } = match config::load(path) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("ERROR {error}");
            return ExitCode::FAILURE;
        }
    };
    for warning in warnings {
        eprintln!("WARNING {} ({})", warning.message, warning.origin);
    }
    // The file that holds the password, if a file does (not a PGQD_* variable).
    if let Origin::File { file, .. } = origins.of("base_connstr")
        && let Some(warning) = pgconninfo::exposed_password(file, &config.base_connstr)
    {
        eprintln!("WARNING {warning}");
    }
    if let Err(error) = config::check_paths(&config, &origins) {
        eprintln!("ERROR {error}");
        return ExitCode::FAILURE;
    }
    if let Err(error) = check_http(&config) {
        eprintln!("ERROR {error}");
        return ExitCode::FAILURE;
    }
    print!("{}", config.explained(&origins));
    ExitCode::SUCCESS
}

/// The web config and the files it names, built as start-up builds them; the
/// health check's client config, read as `--healthcheck` reads it. Messages name
/// files and fields, never a secret.
fn check_http(config: &config::Config) -> Result<(), String> {
    if let Some(path) = &config.http_web_config {
        let summary = crate::http::check_web_config(path)?;
        eprintln!("http_web_config: {summary}");
    }
    if let Some(path) = &config.http_healthcheck_config {
        crate::http::client::ClientFile::load(path)?;
    }
    Ok(())
}
