//! Recovery from a server restart: fast reconnect, one log line per outage edge.

use std::time::Duration;

use crate::harness::{Cluster, Daemon, ticker_calls};

use super::{all_ticks, check, eager_queue, lines_with, pgq_db, serving, wait_for};

/// Seconds from the server's start to the first tick after it.
const RESUMED: &str = "select extract(epoch from min(tick_time) - pg_postmaster_start_time())::float8 from pgq.tick where tick_time > pg_postmaster_start_time()";

/// After the server is stopped for 3 s and started again, ticking resumes within a
/// few seconds (the backoff is at 2 s by then; pgqd 3.5 waits 60 s), counted both as
/// `pgq.ticker()` calls and as new ticks; the log has exactly one `connection lost`
/// line for the outage and one `connection restored after` line.
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
    let (calls_at_start, ticks_at_start) = (ticker_calls(&cluster, &db), all_ticks(&cluster, &db));
    wait_for(&daemon, "new ticks after the restart", || {
        all_ticks(&cluster, &db) > ticks_at_start
    });
    wait_for(&daemon, "ticker calls counted after the restart", || {
        ticker_calls(&cluster, &db) > calls_at_start
    });
    // Measured on the server's clock, from the postmaster's start to the first tick
    // after it: the test's own polling is not counted. 10 s leaves a loaded machine
    // several times the backoff's 2 s and fails pgqd 3.5's 60 s.
    let resumed: f64 = cluster.connect(&db).query_one(RESUMED, &[]).unwrap().get(0);
    check(
        &daemon,
        resumed < 10.0,
        &format!("ticking resumed {resumed:.2} s after the server started"),
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
