//! The `pgqd` binary: parse the command line, load the config, daemonize if asked,
//! build the runtime, run, and turn the outcome into an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    pgqd::app::main(std::env::args_os())
}
