//! Recovery from a server restart: fast reconnect, one log line per outage edge.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, Daemon, ticker_calls};

use super::{all_ticks, check, eager_queue, lines_with, pgq_db, serving, wait_for};

/// After the server is stopped for 3 s and started again, ticking resumes within a
/// few seconds (pgqd 3.5 waits 60 s), counted both as `pgq.ticker()` calls and as new
/// ticks; the log has exactly one `connection lost` line for the outage and one
/// `connection restored after` line.
#[test]
fn ticking_resumes_after_server_restart() {
    let cluster = Cluster::start();
    let db = pgq_db(&cluster, "restart");
    eager_queue(&cluster, &db, "q");
    // pgq.create_queue() calls the ticker itself: count the daemon's calls from here.
    let before = ticker_calls(&cluster, &db);
    let daemon = Daemon::start(&serving(&cluster, &[&db], &["ticker_period = 0.2"]));
    wait_for(&daemon, "ticker calls counted", || {
        ticker_calls(&cluster, &db) > before
    });

    cluster.stop_server();
    std::thread::sleep(Duration::from_secs(3)); // the outage being recovered from
    cluster.start_server();
    let up = Instant::now();
    let (calls_at_start, ticks_at_start) = (ticker_calls(&cluster, &db), all_ticks(&cluster, &db));
    wait_for(&daemon, "new ticks after the restart", || {
        all_ticks(&cluster, &db) > ticks_at_start
    });
    let resumed = up.elapsed();
    wait_for(&daemon, "ticker calls counted after the restart", || {
        ticker_calls(&cluster, &db) > calls_at_start
    });
    check(
        &daemon,
        resumed < Duration::from_secs(10),
        &format!("ticking resumed {resumed:?} after the server was up"),
    );
    // The ticker and housekeeping connections share one outage: one line each way.
    let count = |what: &str| lines_with(&daemon.output(), &[what]);
    wait_for(&daemon, "the restored line", || {
        count("connection restored after") == 1
    });
    check(
        &daemon,
        count("connection lost") == 1,
        "one connection lost line for the outage",
    );
}
