//! pgqd's command line: its switches, its messages and its exit codes, parsed with clap.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print usage, exit 0.
    Help,
    /// Print `pgqd version X`, exit 0.
    Version,
    /// Print the sample pgqd.ini, exit 0.
    Ini,
    /// Validate the config and print the effective settings.
    Check { config: PathBuf },
    /// Connect to the databases and report the queues' health (`--status [--json]`).
    Status { config: PathBuf, json: bool },
    /// Ask the running daemon's `/healthz` (`--healthcheck`), or `/livez` or `/readyz`
    /// (`--healthcheck=/livez`), for container health checks and exec probes.
    Healthcheck { config: PathBuf, path: HealthPath },
    /// Send a signal to the daemon named by the pidfile (`-s`, `-k`, `-r`).
    Signal {
        config: PathBuf,
        signal: ControlSignal,
    },
    /// Run the daemon.
    Run {
        config: PathBuf,
        options: RunOptions,
    },
}

/// The signal `-s`, `-k` or `-r` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlSignal {
    /// `-s`: SIGINT, graceful stop.
    Stop,
    /// `-k`: SIGTERM, fast exit.
    Kill,
    /// `-r`: SIGHUP, reload.
    Reload,
}

/// The endpoint `--healthcheck` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthPath {
    #[default]
    Healthz,
    Livez,
    Readyz,
}

impl HealthPath {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthPath::Healthz => "/healthz",
            HealthPath::Livez => "/livez",
            HealthPath::Readyz => "/readyz",
        }
    }

    fn parse(text: &str) -> Option<HealthPath> {
        [HealthPath::Healthz, HealthPath::Livez, HealthPath::Readyz]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// Switches that shape a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunOptions {
    pub verbose: u8,
    pub quiet: bool,
    pub daemon: bool,
}

/// Why the command line was refused; `main` prints it and exits 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// pgqd prints `bad switch: ` and the usage on stdout.
    BadSwitch(String),
    /// pgqd prints `pgqd requires config file` on stderr.
    NeedsConfig,
}

pub const USAGE: &str = "\
usage: pgqd [switches] config.file
Switches:
  -v        Increase verbosity
  -q        No output to console
  -d        Daemonize
  -h        Show help
  -V        Show version
 --ini      Show sample config file
 --check    Validate config file and show effective settings
 --status   Report each database's queues and consumers; exit 1 if any is stalled
 --json     With --status: print JSON
 --healthcheck  Exit 0 if the running daemon's /healthz (at http_listen) says healthy
                (--healthcheck=/livez or =/readyz asks that endpoint instead)
  -s        Stop - send SIGINT to running process
  -k        Kill - send SIGTERM to running process
  -r        Reload - send SIGHUP to running process
";

#[derive(Parser, Debug)]
#[command(name = "pgqd", disable_help_flag = true, disable_version_flag = true)]
struct Args {
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    #[arg(short = 'q')]
    quiet: bool,
    #[arg(short = 'd')]
    daemon: bool,
    #[arg(short = 's')]
    stop: bool,
    #[arg(short = 'k')]
    kill: bool,
    #[arg(short = 'r')]
    reload: bool,
    #[arg(short = 'h', long = "help")]
    help: bool,
    #[arg(short = 'V')]
    version: bool,
    #[arg(long = "ini")]
    ini: bool,
    #[arg(long = "check")]
    check: bool,
    #[arg(long = "status")]
    status: bool,
    #[arg(long = "json")]
    json: bool,
    /// Optional `=PATH`, never a separate word: `--healthcheck pgqd.ini` names the config.
    #[arg(long = "healthcheck", num_args = 0..=1, require_equals = true, default_missing_value = "/healthz")]
    healthcheck: Option<String>,
    #[arg(value_name = "config.file")]
    config: Vec<PathBuf>,
}

/// Parses the arguments (the first is the program name).
pub fn parse<I, T>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::try_parse_from(args)
        .map_err(|e| UsageError::BadSwitch(first_line(&e.to_string())))?;
    // pgqd looks for --ini and --help before anything else, then -V.
    if args.ini {
        return Ok(Command::Ini);
    }
    if args.help {
        return Ok(Command::Help);
    }
    if args.version {
        return Ok(Command::Version);
    }
    let [config] = <[PathBuf; 1]>::try_from(args.config).map_err(|_| UsageError::NeedsConfig)?;
    // With several of -s/-k/-r, pgqd acts on the last one given; clap does not keep
    // the order, so the strongest wins here: -k over -s over -r.
    let signal = match (args.kill, args.stop, args.reload) {
        (true, _, _) => Some(ControlSignal::Kill),
        (_, true, _) => Some(ControlSignal::Stop),
        (_, _, true) => Some(ControlSignal::Reload),
        _ => None,
    };
    if args.status {
        return Ok(Command::Status {
            config,
            json: args.json,
        });
    }
    if let Some(path) = args.healthcheck {
        let path = HealthPath::parse(&path).ok_or_else(|| {
            UsageError::BadSwitch(format!(
                "--healthcheck={path}: use /healthz, /livez or /readyz"
            ))
        })?;
        return Ok(Command::Healthcheck { config, path });
    }
    Ok(match (args.check, signal) {
        (true, _) => Command::Check { config },
        (false, Some(signal)) => Command::Signal { config, signal },
        (false, None) => Command::Run {
            config,
            options: RunOptions {
                verbose: args.verbose,
                quiet: args.quiet,
                daemon: args.daemon,
            },
        },
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Result<Command, UsageError> {
        parse(std::iter::once("pgqd").chain(args.iter().copied()))
    }

    fn run(verbose: u8, quiet: bool, daemon: bool) -> Command {
        Command::Run {
            config: "c.ini".into(),
            options: RunOptions {
                verbose,
                quiet,
                daemon,
            },
        }
    }

    /// Combined short flags and repeated -v work as with getopt.
    #[test]
    fn combined_flags() {
        assert_eq!(cmd(&["-qvd", "c.ini"]), Ok(run(1, true, true)));
        assert_eq!(cmd(&["-vv", "c.ini"]), Ok(run(2, false, false)));
        assert_eq!(cmd(&["-v", "-v", "-v", "c.ini"]), Ok(run(3, false, false)));
        assert_eq!(cmd(&["c.ini", "-d"]), Ok(run(0, false, true)));
    }

    /// Exactly one config path is required.
    #[test]
    fn needs_one_config() {
        assert_eq!(cmd(&[]), Err(UsageError::NeedsConfig));
        assert_eq!(cmd(&["-v"]), Err(UsageError::NeedsConfig));
        assert_eq!(cmd(&["a.ini", "b.ini"]), Err(UsageError::NeedsConfig));
    }

    /// An unknown switch is a bad switch.
    #[test]
    fn bad_switch() {
        assert!(matches!(
            cmd(&["-x", "c.ini"]),
            Err(UsageError::BadSwitch(_))
        ));
        assert!(matches!(cmd(&["--nope"]), Err(UsageError::BadSwitch(_))));
    }

    /// --ini, --help and -V need no config file.
    #[test]
    fn informational() {
        assert_eq!(cmd(&["--ini"]), Ok(Command::Ini));
        assert_eq!(cmd(&["-h"]), Ok(Command::Help));
        assert_eq!(cmd(&["--help", "x", "y"]), Ok(Command::Help));
        assert_eq!(cmd(&["-V"]), Ok(Command::Version));
    }

    /// -s, -k, -r select the signal; --check the validation.
    #[test]
    fn dispatch() {
        let signal = |s| {
            Ok(Command::Signal {
                config: "c.ini".into(),
                signal: s,
            })
        };
        assert_eq!(cmd(&["-s", "c.ini"]), signal(ControlSignal::Stop));
        assert_eq!(cmd(&["-k", "c.ini"]), signal(ControlSignal::Kill));
        assert_eq!(cmd(&["-r", "c.ini"]), signal(ControlSignal::Reload));
        let health = |path| {
            Ok(Command::Healthcheck {
                config: "c.ini".into(),
                path,
            })
        };
        assert_eq!(
            cmd(&["--healthcheck", "c.ini"]),
            health(HealthPath::Healthz)
        );
        assert_eq!(
            cmd(&["--healthcheck=/livez", "c.ini"]),
            health(HealthPath::Livez)
        );
        assert_eq!(
            cmd(&["c.ini", "--healthcheck=/readyz"]),
            health(HealthPath::Readyz)
        );
        assert!(matches!(
            cmd(&["--healthcheck=/metrics", "c.ini"]),
            Err(UsageError::BadSwitch(_))
        ));
        assert_eq!(
            cmd(&["--check", "c.ini"]),
            Ok(Command::Check {
                config: "c.ini".into()
            })
        );
    }
}
