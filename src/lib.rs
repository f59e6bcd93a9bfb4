//! pgqd: the PgQ ticker and maintenance daemon, a drop-in replacement for pgqd 3.5.
//!
//! # Layout
//!
//! - `app`: what `main` does: dispatch the command line, start-up, exit codes.
//! - `cli`: pgqd's switches and usage messages.
//! - `config`: the typed configuration: pgqd.ini (`config/ini.rs`), TOML and `PGQD_*`
//!   variables read as raw entries with their origin, typed by one key table (`keys.rs`).
//! - `daemon`: running as a process: start-up, the runtime, pidfile, `-s`/`-k`/`-r`.
//! - `signals`: SIGINT, SIGTERM, SIGHUP.
//! - `notify`: systemd notifications: readiness, reload, stop, watchdog, `STATUS=`.
//! - `logging`: pgqd's log line format, JSON lines, logfile and syslog.
//! - `supervisor`: the set of database tasks: discovery cadence, start/stop, reload, shutdown.
//! - `discovery`: which databases exist.
//! - `lookout`: the server-wide look for other tickers (a pgqd 3.5 left running).
//! - `db`: one database's task: probe pgq, wait on a standby, tick with housekeeping
//!   between the ticks on one kept connection (`db/mod.rs` lists its phases).
//! - `jobs`: one call or round of each job (`ticker`, `retry`, `maint`, `queue_stats`)
//!   and its SQL; `Job`, the names of jobs and phases in logs and metric labels.
//! - `pidfile`: the pidfile and finding the running daemon.
//! - `pg`: the one connection helper: timeouts, server-side cancel, SQLSTATE classes.
//! - `schedule`: fixed-rate periods and capped backoff.
//! - `clock`: the ticker clock every database task's ticks share.
//! - `stats`: counters and per-database state, in one place (monotonic; pgqd's stats
//!   line is their difference).
//! - `health`: the liveness, readiness and tick-age rules.
//! - `metrics`: the Prometheus families, read from `stats` at scrape time.
//! - `http`: the optional listener: `/metrics`, `/livez`, `/readyz`, `/healthz`, `/status`,
//!   behind TLS and basic auth from an exporter-toolkit web config (`http_web_config`);
//!   its client side for `--healthcheck` (`http/mod.rs` lists its parts).
//! - `status`: `pgqd --status` and `pgqd --healthcheck`.
//!
//! `base_connstr` (password never shown) and how connections are made, libpq's rules,
//! are the crate `pgconninfo` in `crates/pgconninfo/`, which imports nothing of the daemon.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod db;
pub mod discovery;
pub mod health;
pub mod http;
pub mod jobs;
pub mod logging;
pub mod lookout;
pub mod metrics;
pub mod notify;
pub mod pg;
pub mod pidfile;
pub mod schedule;
pub mod signals;
pub mod stats;
pub mod status;
pub mod supervisor;

/// The version reported by `-V` and in `Starting pgqd X`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
