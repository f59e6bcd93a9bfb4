//! pgqd: the PgQ ticker and maintenance daemon, a drop-in replacement for pgqd 3.5.
//!
//! # Layout
//!
//! - `app`: what `main` does: dispatch the command line, start-up, exit codes.
//! - `cli`: pgqd's switches and usage messages.
//! - `config`: the typed configuration, read from pgqd.ini (`config/ini.rs`) or TOML.
//! - `conninfo`: `base_connstr` (password never shown) and how connections are made.
//! - `logging`: pgqd's log line format, JSON lines, logfile and syslog.

pub mod app;
pub mod cli;
pub mod config;
pub mod conninfo;
pub mod daemon;
pub mod logging;

/// The version reported by `-V` and in `Starting pgqd X`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
