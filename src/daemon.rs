//! Running as a process: start-up (logging, config, pidfile), daemonizing before the
//! runtime exists, the runtime itself, and `-s`/`-k`/`-r`.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{ForkResult, Pid};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::cli::{ControlSignal, RunOptions};
use crate::config::{self, Config};
use crate::http::HttpServer;
use crate::logging::{self, ConsoleOptions, LogHandle};
use crate::notify;
use crate::pidfile::{self, Holder, Pidfile};
use crate::signals::SignalHandler;
use crate::stats::Stats;
use crate::supervisor::Supervisor;

/// `-s`, `-k`, `-r`: signal the daemon whose pid is in the configured pidfile.
/// Messages go to stderr and the exit code is 0, as with pgqd 3.5.
pub fn signal_running(config_path: &Path, signal: ControlSignal) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(loaded) => loaded.config,
        Err(error) => {
            eprintln!("ERROR {error}");
            return ExitCode::FAILURE;
        }
    };
    let Some(path) = config.pidfile else {
        eprintln!("No pidfile configured");
        return ExitCode::FAILURE;
    };
    let (signal, name) = match signal {
        ControlSignal::Stop => (Signal::SIGINT, "SIGINT"),
        ControlSignal::Kill => (Signal::SIGTERM, "SIGTERM"),
        ControlSignal::Reload => (Signal::SIGHUP, "SIGHUP"),
    };
    match pidfile::holder(&path) {
        Holder::Running(pid) => match kill(Pid::from_raw(pid), signal) {
            Ok(()) => eprintln!("{name} sent"),
            Err(e) => {
                eprintln!("cannot send {name} to {pid}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Holder::NotRunning => eprintln!("Old process is not running"),
    }
    ExitCode::SUCCESS
}

/// Runs the daemon until a signal stops it.
pub fn run(config_path: &Path, options: RunOptions) -> ExitCode {
    ignore_hangup_until_handled();
    let log = logging::init(ConsoleOptions {
        verbose: options.verbose,
        quiet: options.quiet,
    });
    // Absolute, so a reload finds the file after a daemon's chdir-free fork as well.
    let config_path =
        std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let config = match load_for_run(&config_path, &log, options.daemon) {
        Ok(config) => config,
        Err(reason) => {
            error!("{reason}");
            error!(fatal = true, "failed to read config");
            return ExitCode::FAILURE;
        }
    };
    let ready_pipe = if options.daemon {
        match daemonize() {
            Ok(Some(pipe)) => Some(pipe),
            Ok(None) => unreachable!("daemonize returns only in the daemon"),
            Err(e) => return fatal(&format!("cannot daemonize: {e}")),
        }
    } else {
        None
    };
    // After the fork, so that the line carries the daemon's pid, the one in the
    // pidfile (pgqd 3.5 logs it before forking, with the parent's pid).
    info!("Starting pgqd {}", crate::VERSION);
    let started = start(&config, ready_pipe.is_some(), &log);
    let (pidfile, runtime) = match started {
        Ok(parts) => parts,
        Err(reason) => {
            report_ready(ready_pipe, Err(&reason));
            return fatal(&reason);
        }
    };
    let code = runtime.block_on(serve(
        config,
        config_path,
        log,
        pidfile.as_ref().map(|p| p.path().to_path_buf()),
        ready_pipe,
    ));
    drop(pidfile);
    code
}

/// Until the signal handlers are installed (inside the runtime), a SIGHUP, say a
/// reload sent by an orchestrator right after the start, is ignored rather than ending
/// the process by its default action (as it would end pgqd 3.5). Installing the
/// handler replaces this disposition.
fn ignore_hangup_until_handled() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler code; nothing runs on the signal.
    if let Err(e) = unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) } {
        tracing::debug!("cannot ignore SIGHUP during start-up: {e}");
    }
}

/// Blocks (`true`) or unblocks SIGINT and SIGTERM on this thread. Blocked from just
/// before the pidfile is written until the handlers are installed: a stop sent in
/// between (`pgqd -s` as soon as the pidfile names us) then waits, pending, for the
/// handlers, instead of killing the process by its default action with the pidfile
/// left behind. No other thread exists yet (the runtime has one; blocking-pool threads
/// start later and inherit the mask as it is then).
fn hold_stop_signals(hold: bool) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let done = if hold {
        set.thread_block()
    } else {
        set.thread_unblock()
    };
    if let Err(e) = done {
        tracing::debug!("cannot change the signal mask: {e}");
    }
}

fn fatal(reason: &str) -> ExitCode {
    error!(fatal = true, "{reason}");
    ExitCode::FAILURE
}

/// Loads and validates the config and opens its log destinations; with `-d`, checks
/// what a daemon needs, as pgqd 3.5.
fn load_for_run(config_path: &Path, log: &LogHandle, daemon: bool) -> Result<Config, String> {
    let loaded = config::load(config_path).map_err(|e| e.to_string())?;
    let ready =
        daemon_requirements(daemon, &loaded.config).and_then(|()| log.apply(&loaded.config));
    // After the sinks are open, so the config's warnings reach the log file and syslog
    // too (with -q or -d the console alone would lose them); when start-up cannot go
    // on, they still go to the console before the error.
    logging::config_warnings(&loaded.warnings);
    ready.map(|()| loaded.config)
}

fn daemon_requirements(daemon: bool, config: &Config) -> Result<(), String> {
    if daemon && config.pidfile.is_none() {
        return Err("daemon needs pidfile configured".into());
    }
    if daemon && config.logfile.is_none() && config.syslog == 0 {
        return Err("daemon needs logging configured".into());
    }
    Ok(())
}

/// Takes the pidfile and builds the runtime (after any fork: forking a running tokio
/// runtime is undefined behaviour).
fn start(
    config: &Config,
    daemon: bool,
    log: &LogHandle,
) -> Result<(Option<Pidfile>, tokio::runtime::Runtime), String> {
    // From the moment the pidfile names this process, `pgqd -s` may signal it.
    hold_stop_signals(true);
    let pidfile = match &config.pidfile {
        Some(path) => Some(Pidfile::create(path, || info!("stale pidfile, removing"))?),
        None => None,
    };
    if daemon {
        log.disable_console();
        redirect_stdio().map_err(|e| format!("cannot redirect stdio to /dev/null: {e}"))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    Ok((pidfile, runtime))
}

/// Forks into the background. The parent waits on a pipe until the daemon reports
/// that it has started (pidfile written, logs open) or why it could not, and exits 0
/// or 1 accordingly; pgqd 3.5's parent exits 0 before the daemon has done anything.
/// Returns the write end of that pipe in the daemon.
fn daemonize() -> Result<Option<OwnedFd>, nix::Error> {
    let (read_end, write_end) = nix::unistd::pipe()?;
    // SAFETY: no other threads exist yet (the runtime is built after this), so the
    // child may run arbitrary code.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            std::process::exit(wait_for_daemon(read_end));
        }
        ForkResult::Child => {}
    }
    drop(read_end);
    nix::unistd::setsid()?;
    // A second fork, so the daemon is not a session leader and never gets a terminal.
    // SAFETY: as above, still single-threaded.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => Ok(Some(write_end)),
    }
}

/// In the parent: reads the daemon's verdict; an empty pipe means it died.
fn wait_for_daemon(read_end: OwnedFd) -> i32 {
    let mut verdict = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut verdict);
    match verdict.strip_prefix("OK") {
        Some(_) => 0,
        None if verdict.is_empty() => {
            eprintln!("pgqd: the daemon exited during start-up; see its log");
            1
        }
        None => {
            eprintln!("pgqd: {}", verdict.trim_end());
            1
        }
    }
}

fn report_ready(pipe: Option<OwnedFd>, result: Result<(), &str>) {
    let Some(pipe) = pipe else { return };
    let message = match result {
        Ok(()) => "OK\n".to_string(),
        Err(reason) => format!("{reason}\n"),
    };
    let _ = std::fs::File::from(pipe).write_all(message.as_bytes());
}

fn redirect_stdio() -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}

/// The async part: signal handling and the supervisor, on one current-thread runtime
/// (the work is almost all waiting; one thread keeps memory and CPU low).
async fn serve(
    config: Config,
    config_path: PathBuf,
    log: LogHandle,
    pidfile: Option<PathBuf>,
    ready_pipe: Option<OwnedFd>,
) -> ExitCode {
    let shutdown = CancellationToken::new();
    let (control_tx, control_rx) = mpsc::channel(4);
    let stats = Arc::new(Stats::default());
    let http_listen = config.http_listen.clone();
    let supervisor = Supervisor::new(config, stats.clone(), shutdown.clone(), control_rx);
    // Bound before the parent of `-d` is told that start-up worked: a port in use is a
    // start-up error.
    let http = match http_listen.as_str() {
        "" => None,
        address => {
            match HttpServer::bind(address, stats, supervisor.settings(), shutdown.clone()).await {
                Ok(server) => Some(server),
                Err(reason) => {
                    report_ready(ready_pipe, Err(&reason));
                    return fatal(&reason);
                }
            }
        }
    };
    let handler = SignalHandler {
        config_path,
        log,
        control: control_tx,
        shutdown: shutdown.clone(),
        on_fast_exit: Box::new(move || {
            if let Some(path) = &pidfile {
                pidfile::remove_own(path);
            }
        }),
    };
    let installed = handler.install();
    hold_stop_signals(false);
    match installed {
        Ok(signals) => drop(tokio::spawn(signals)),
        Err(e) => {
            let reason = format!("cannot install signal handlers: {e}");
            report_ready(ready_pipe, Err(&reason));
            return fatal(&reason);
        }
    }
    // Only now may the parent of `-d` exit: a `-r` or `-s` sent as soon as it has must
    // find the handlers in place (the default action of SIGHUP and SIGINT kills).
    report_ready(ready_pipe, Ok(()));
    tokio::spawn(notify::watchdog(shutdown.clone()));
    if let Some(http) = http {
        tokio::spawn(http.run());
    }
    supervisor.run().await;
    ExitCode::SUCCESS
}
