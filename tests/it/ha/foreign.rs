//! A ticker that takes no lock (Debian's pgqd 3.5, a cron job) beside ours: reported by
//! a log line naming it, `pgqd_foreign_ticker` and `/status` while it ticks, and a line
//! when it is gone; Londiste's four-argument `pgq.ticker(...)` raises no alarm. Beside
//! pgqd 3.5 a consumer reads the queue throughout and gets every event exactly once.

use std::time::{Duration, Instant};

use crate::engine::{check, eager_queue, pgq_db, wait_for};
use crate::harness::{Cluster, DEADLINE, Daemon, pgqd, poll, reference_pgqd};
use crate::observability::{Exposition, free_port, get, listen_on, request, wait_long};

use super::exactly_once::{Consumer, Producer, exactly_once};
use super::ticks_by;

/// Ours, serving `db` with the listener on `port`.
fn ours(cluster: &Cluster, db: &str, port: u16) -> Daemon {
    Daemon::start(&format!(
        "base_connstr = {}\ndatabase_list = {db}\nticker_period = 0.2\n{}",
        cluster.connstr(),
        listen_on(port)
    ))
}

/// Debian's pgqd 3.5 ticking `db` every second.
fn pgqd35(cluster: &Cluster, db: &str) -> Daemon {
    Daemon::start_binary(
        &reference_pgqd(),
        &format!(
            "base_connstr = {}\ndatabase_list = {db}\nticker_period = 1",
            cluster.connstr()
        ),
        &["-v"],
    )
}

/// Ours with `foreign_ticker = yield`, as application_name `ours`.
fn yielding(cluster: &Cluster, db: &str, port: u16) -> Daemon {
    Daemon::start(&format!(
        "base_connstr = {} application_name=ours\ndatabase_list = {db}\nticker_period = 0.2\nforeign_ticker = yield\n{}",
        cluster.connstr(),
        listen_on(port)
    ))
}

/// Longer than the watch period (30 s) with room: a change is seen at the next look.
const LOOK: Duration = Duration::from_secs(75);

/// A producer committing numbered events into `q` and a consumer registered before
/// the first of them, through a whole test.
struct Traffic {
    producer: Producer,
    consumer: Consumer,
}

impl Traffic {
    fn start(cluster: &Cluster, db: &str) -> Traffic {
        let consumer = Consumer::start(cluster, db, "q");
        let producer = Producer::start(cluster, db, "q");
        Traffic { producer, consumer }
    }

    /// Stops producing and checks that every event was delivered exactly once (some
    /// ticker must still tick, so that the last events reach a batch).
    fn check(self, daemon: &Daemon, case: &str) {
        let produced = self.producer.stop();
        let consumed = self.consumer.drain(&produced, LOOK);
        match exactly_once(&produced, &consumed) {
            Ok(summary) => eprintln!("{case}: {summary}"),
            Err(problem) => check(daemon, false, &format!("{case}: {problem}")),
        }
    }
}

/// Waits until the daemon's output holds `needle` `times` times.
fn wait_lines(daemon: &Daemon, needle: &str, times: usize) {
    wait_long(daemon, needle, LOOK, || {
        daemon.output().matches(needle).count() >= times
    });
}

/// `pgqd_foreign_ticker` of `db` on the listener at `port`.
fn foreign_gauge(port: u16, db: &str) -> Option<f64> {
    let response = request(port, "GET", "/metrics")?;
    let page = Exposition::parse(&response.body).ok()?;
    page.value("pgqd_foreign_ticker", &[("datname", db)])
}

/// The backends of `db` whose last statement is the all-queue ticker call.
fn ticker_backends(cluster: &Cluster, db: &str) -> Vec<i32> {
    let rows = cluster
        .connect("postgres")
        .query(
            "select pid from pg_stat_activity where datname = $1 and query ~* 'pgq\\.ticker\\(\\)'",
            &[&db],
        )
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// pgqd 3.5 ticking before ours starts, and again after ours runs: each time ours
/// logs one line naming pgqd 3.5's backend, shows it in `pgqd_foreign_ticker` and
/// `/status`, and logs its end when pgqd 3.5 stops. Every event committed throughout
/// (both ticking, one, both again) is delivered exactly once.
#[test]
fn pgqd35_beside_ours_is_reported_until_it_stops() {
    let cluster = Cluster::start();
    let db = pgq_db(&cluster, "shared");
    eager_queue(&cluster, &db, "q");
    let traffic = Traffic::start(&cluster, &db);
    let reference = pgqd35(&cluster, &db);
    wait_for(&reference, "pgqd 3.5 ticking", || {
        !ticker_backends(&cluster, &db).is_empty()
    });
    let theirs = ticker_backends(&cluster, &db);
    let port = free_port();
    let daemon = ours(&cluster, &db, port);
    wait_lines(
        &daemon,
        "another ticker calls pgq.ticker() in this database: pid ",
        1,
    );
    let line = (daemon.output().lines())
        .find(|l| l.contains("another ticker calls"))
        .unwrap_or_default()
        .to_string();
    check(
        &daemon,
        theirs
            .iter()
            .any(|pid| line.contains(&format!("pid {pid},"))),
        &format!("the line names one of pgqd 3.5's backends {theirs:?}: {line}"),
    );
    wait_for(&daemon, "pgqd_foreign_ticker = 1", || {
        foreign_gauge(port, &db) == Some(1.0)
    });
    let status = get(port, "/status").json();
    let shown = &status["databases"][&db]["foreign_ticker"]["pid"];
    check(
        &daemon,
        shown.is_i64(),
        &format!("/status shows it: {status}"),
    );
    // pgqd --status, run beside them, lists both tickers and flags the database. A
    // ticker counts when its session's last statement is the ticker call: ours runs
    // housekeeping on that session between ticks (most of it in its first seconds), so
    // one look may miss it; the next ones see it.
    let mut last = String::new();
    let flagged = poll(DEADLINE, || {
        let out = pgqd()
            .args(["--status", "--json"])
            .arg(daemon.config_path())
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let tickers = report[0]["tickers"].as_array().map_or(0, Vec::len);
        last = format!(
            "--status exit {:?}, {tickers} tickers: {report}",
            out.status.code()
        );
        out.status.code() == Some(1) && tickers == 2
    });
    check(&daemon, flagged, &last);

    drop(reference);
    wait_lines(&daemon, "no longer calls pgq.ticker() in this database", 1);
    wait_for(&daemon, "pgqd_foreign_ticker = 0", || {
        foreign_gauge(port, &db) == Some(0.0)
    });

    // Ours first this time: pgqd 3.5 started beside it is reported too.
    let _again = pgqd35(&cluster, &db);
    wait_lines(&daemon, "another ticker calls", 2);
    traffic.check(&daemon, "pgqd 3.5 beside ours");
}

/// Londiste's cascading calls the four-argument `pgq.ticker(queue, tick_id, time,
/// seq)` on nodes whose queues have an external ticker, and a monitoring query may
/// name `pgq.ticker()` in its text: sessions doing so for longer than the watch period
/// raise no report.
#[test]
fn four_argument_calls_and_queries_naming_the_ticker_raise_no_alarm() {
    let cluster = Cluster::start();
    let db = pgq_db(&cluster, "cascaded");
    eager_queue(&cluster, &db, "q");
    let port = free_port();
    let daemon = ours(&cluster, &db, port);
    wait_for(&daemon, "the gauge at 0", || {
        foreign_gauge(port, &db) == Some(0.0)
    });
    let mut londiste = cluster.connect(&db);
    let mut monitoring = cluster.connect(&db);
    let start = Instant::now();
    // Longer than the watch period (30 s), so at least one look falls inside.
    while start.elapsed() < Duration::from_secs(33) {
        // Whether pgq accepts the call (the queue has no external ticker) does not
        // matter: pg_stat_activity shows the statement either way.
        let _ = londiste.batch_execute("select pgq.ticker('q', 1::bigint, now(), 1::bigint)");
        monitoring
            .batch_execute(
                "select count(*) from pg_stat_activity where query like '%pgq.ticker()%'",
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    check(
        &daemon,
        !daemon.output().contains("another ticker") && foreign_gauge(port, &db) == Some(0.0),
        "a four-argument call or a monitoring query was reported as another ticker",
    );
}

/// With `foreign_ticker = yield`, ours leaves a database that pgqd 3.5 ticks to it:
/// state `yielding`, no tick of its own while pgqd 3.5 runs; once pgqd 3.5 stops, ours
/// ticks it again by itself. Every event is delivered exactly once throughout.
#[test]
fn yield_leaves_the_database_to_pgqd35_until_it_stops() {
    let cluster = Cluster::start();
    let db = pgq_db(&cluster, "yielded");
    eager_queue(&cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client.batch_execute(super::LOG_TICKS).unwrap();
    let traffic = Traffic::start(&cluster, &db);
    let reference = pgqd35(&cluster, &db);
    wait_for(&reference, "pgqd 3.5 ticking", || {
        !ticker_backends(&cluster, &db).is_empty()
    });
    let port = free_port();
    let daemon = yielding(&cluster, &db, port);
    wait_lines(&daemon, "no ticks or housekeeping from here", 1);
    let state = || get(port, "/status").json()["databases"][&db]["state"].clone();
    check(
        &daemon,
        state() == "yielding",
        &format!("state {}", state()),
    );
    let before = ticks_by(&mut client, "ours");
    std::thread::sleep(Duration::from_secs(3));
    let after = ticks_by(&mut client, "ours");
    check(
        &daemon,
        after == before,
        &format!("ours ticked {} times while yielding", after - before),
    );
    let healthz = request(port, "GET", "/healthz?max_tick_age=1s").map(|r| r.status);
    check(
        &daemon,
        healthz == Some(200),
        &format!("/healthz {healthz:?} while yielding"),
    );

    drop(reference);
    wait_lines(&daemon, "ticking again: no other ticker seen", 1);
    wait_for(&daemon, "ours ticking again", || {
        ticks_by(&mut client, "ours") > after + 2
    });
    traffic.check(&daemon, "yielding to pgqd 3.5");
}

/// Ours first (with `foreign_ticker = yield`), then pgqd 3.5 started beside it: ours
/// reports it and yields, making no tick of its own while pgqd 3.5 ticks; once pgqd
/// 3.5 stops, ours ticks again. A consumer reading throughout (both ticking until the
/// next look, then pgqd 3.5 alone, then ours) gets every event exactly once.
#[test]
fn pgqd35_started_beside_ours_is_yielded_to() {
    let cluster = Cluster::start();
    let db = pgq_db(&cluster, "later");
    eager_queue(&cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client.batch_execute(super::LOG_TICKS).unwrap();
    let traffic = Traffic::start(&cluster, &db);
    let daemon = yielding(&cluster, &db, free_port());
    wait_for(&daemon, "ours ticking", || {
        ticks_by(&mut client, "ours") > 0
    });
    let reference = pgqd35(&cluster, &db);
    wait_lines(&daemon, "no ticks or housekeeping from here", 1);
    // (all ticks, ours)
    let logged = |client: &mut postgres::Client| -> (i64, i64) {
        let all = client.query_one("select count(*) from public.tick_log", &[]);
        (all.unwrap().get(0), ticks_by(client, "ours"))
    };
    let (total_before, ours_before) = logged(&mut client);
    std::thread::sleep(Duration::from_secs(3));
    let (total_after, ours_after) = logged(&mut client);
    check(
        &daemon,
        ours_after == ours_before && total_after > total_before,
        &format!(
            "while yielding: ours ticked {} times, pgqd 3.5 {} times",
            ours_after - ours_before,
            (total_after - total_before) - (ours_after - ours_before)
        ),
    );
    drop(reference);
    wait_lines(&daemon, "ticking again: no other ticker seen", 1);
    wait_for(&daemon, "ours ticking again", || {
        ticks_by(&mut client, "ours") > ours_after + 2
    });
    traffic.check(&daemon, "pgqd 3.5 started beside ours");
}
