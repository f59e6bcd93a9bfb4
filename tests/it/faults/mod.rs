//! The fault suite: the daemon against servers and databases that fail under it.
//!
//! Every test runs one fault through a [`Rig`]: two or three pgq databases, each with
//! an eagerly ticked queue, a registered consumer and a producer thread inserting
//! numbered events all through the fault. After the fault the rig asserts, and prints
//! as one `fault ...` line: the daemon is still running; ticking resumed (the first
//! tick whose `tick_time` is after the fault's end, read from `pgq.tick`); the databases
//! the fault does not touch kept ticking during it; every event the producers saw
//! committed is read back by the consumer; at most a few ERROR/WARNING lines per
//! database; a bounded number of new server sessions (`pg_stat_database.sessions`,
//! less the rig's own connections).
//!
//! `PGQD_FAULTS_BINARY` names another pgqd binary (pgqd 3.5) to run the same faults
//! against, for comparison: this pgqd's own keys are left out of its pgqd.ini.

mod connections;
mod locks;
mod measure;
mod rig;
mod schema;
mod server;
mod traffic;

use std::ffi::OsString;
use std::time::Duration;

pub use rig::{Bounds, Rig};

/// Settings of every fault run: quick ticks; short maintenance, retry and check
/// periods, so that housekeeping and refusals' waits happen during the fault.
const SETTINGS: &[&str] = &[
    "ticker_period = 0.2",
    "check_period = 5",
    "retry_period = 1",
    "maint_period = 1",
];

/// How long most faults last.
const FAULT: Duration = Duration::from_secs(6);

/// Keys pgqd 3.5 does not know (it refuses to start with them).
const OWN_KEYS: &[&str] = &[
    "ticker_timeout",
    "retry_timeout",
    "maint_timeout",
    "connect_timeout",
    "log_format",
    "http_listen",
    "queue_stats_period",
];

/// How long to wait for the compared pgqd to resume (pgqd 3.5 waits up to a minute or
/// more after a lost connection): its times are measured, not bounded.
const COMPARED_WAIT: Duration = Duration::from_secs(180);

/// The pgqd binary to compare against, when `PGQD_FAULTS_BINARY` names one.
fn compared_binary() -> Option<OsString> {
    std::env::var_os("PGQD_FAULTS_BINARY")
}
