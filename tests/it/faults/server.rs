//! Faults of the whole server: restarts, a stop, a hang. Each on a cluster of its own.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::engine::check;
use crate::harness::Cluster;

use super::{Bounds, Rig};

/// `pg_ctl restart -m fast` under three ticking databases: ticking resumes in all,
/// no event is lost, the daemon stays up with few log lines and sessions.
#[test]
fn server_restart_fast() {
    let cluster = Cluster::start();
    let mut rig = Rig::start(&cluster, 3, &[]);
    rig.begin("server restart fast", &rig.all());
    cluster.restart_server("fast");
    rig.end();
    rig.finish(Bounds::DEFAULT);
}

/// `pg_ctl restart -m immediate` (a crash and recovery; synchronous_commit on, so
/// what a producer saw committed survives it): ticking resumes, no event is lost.
#[test]
fn server_restart_immediate() {
    let cluster = Cluster::start_with(&["synchronous_commit = on"]);
    let mut rig = Rig::start(&cluster, 3, &[]);
    rig.begin("server restart immediate", &rig.all());
    rig.crash_resets_statistics();
    cluster.restart_server("immediate");
    rig.end();
    rig.finish(Bounds::DEFAULT);
}

/// The server stopped for 10 s and started again: the daemon stays up, retries with
/// its backoff (100 ms doubling to 2 s: about 9 attempts per database in 10 s, not a
/// reconnect storm), and ticks again soon after.
#[test]
fn server_stopped_for_a_while() {
    let cluster = Cluster::start();
    let mut rig = Rig::start(&cluster, 3, &[]);
    rig.begin("server stopped 10 s", &rig.all());
    cluster.stop_server();
    rig.hold(Duration::from_secs(10));
    cluster.start_server();
    rig.end();
    // A stopped server logs no connection (a refused one makes no session), so the
    // attempts are counted in the daemon's output (it runs with -v): the first failure
    // of an outage is an ERROR line, every later attempt a DEBUG line.
    for i in rig.all() {
        let attempts = rig.lines_about(i, &["cannot connect"])
            + rig.lines_about(i, &["connection lost"])
            + rig.lines_about(i, &["still unreachable"]);
        let what = format!(
            "{attempts} connection attempts for {} in a 10 s stop (2 to 15)",
            rig.dbs[i]
        );
        check(&rig.daemon, (2..=15).contains(&attempts), &what);
    }
    rig.finish(Bounds::DEFAULT);
}

/// The server hung (postmaster and backends SIGSTOPped) for 10 s, with
/// ticker_timeout = 2 and connect_timeout = 2: calls and connection attempts time out
/// rather than hang the daemon (a "timed out" line for every database); after SIGCONT
/// ticking resumes and no event is lost.
#[test]
fn server_hung() {
    let cluster = Cluster::start();
    let mut rig = Rig::start(&cluster, 3, &["ticker_timeout = 2", "connect_timeout = 2"]);
    rig.begin("server hung (SIGSTOP) 10 s", &rig.all());
    let hung = Hung::stop(&cluster);
    rig.hold(Duration::from_secs(10));
    drop(hung);
    rig.end();
    // The hang was noticed by a timeout, not by the calls finishing after SIGCONT.
    for i in rig.all() {
        let timeouts = rig.lines_about(i, &["timed out"]);
        let what = format!("{timeouts} 'timed out' lines for {}", rig.dbs[i]);
        check(&rig.daemon, timeouts >= 1, &what);
    }
    rig.finish(Bounds::DEFAULT);
}

/// Server processes stopped with SIGSTOP; continued when dropped (also on a panic).
struct Hung(Vec<i32>);

impl Hung {
    fn stop(cluster: &Cluster) -> Hung {
        let pids = cluster.server_pids();
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
        Hung(pids)
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        for &pid in self.0.iter().rev() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
}
