//! The ticker: events reach consumers, calls come at a fixed rate, pgqd's log lines.

use std::time::Duration;

use crate::harness::{Cluster, Daemon, unique};

use super::{all_ticks, check, eager_queue, pgq_db, pgqd_backends, serving, wait_for};

/// An event inserted into a queue reaches a registered consumer in a batch, because
/// the daemon ticks the queue.
#[test]
fn inserted_event_reaches_consumer() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "consume");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    let payload = unique("payload");
    client
        .query("select pgq.register_consumer('q', 'c')", &[])
        .unwrap();
    client
        .query("select pgq.insert_event('q', 'test', $1)", &[&payload])
        .unwrap();
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 0.2"]));
    let mut seen = Vec::new();
    wait_for(&daemon, "the event in a batch", || {
        seen.extend(next_batch_data(&mut client));
        seen.contains(&payload)
    });
}

/// The data of the events in the consumer's next batch (finished at once); empty
/// when no batch is ready.
fn next_batch_data(client: &mut postgres::Client) -> Vec<String> {
    let batch: Option<i64> = client
        .query_one("select pgq.next_batch('q', 'c')", &[])
        .unwrap()
        .get(0);
    let Some(batch) = batch else {
        return Vec::new();
    };
    let data = client
        .query("select ev_data from pgq.get_batch_events($1)", &[&batch])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    client
        .query("select pgq.finish_batch($1)", &[&batch])
        .unwrap();
    data
}

/// ticker_period = 0.1 gives about ten ticker calls a second: over a 5 s window of
/// server time, the ticks of a queue ticked on every call number 30 to 70 (a sanity
/// check of sub-second fixed-rate ticking, not a benchmark).
#[test]
fn sub_second_ticker_period() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "rate");
    eager_queue(cluster, &db, "q");
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 0.1"]));
    daemon.wait_for_log("pgq version ok");
    let mut client = cluster.connect(&db);
    let start: std::time::SystemTime = client
        .query_one("select now() + interval '1 second'", &[])
        .unwrap()
        .get(0);
    let end = start + Duration::from_secs(5);
    wait_for(&daemon, "ticks past the 5 s window", || {
        client
            .query_one(
                "select exists (select from pgq.tick where tick_time > $1)",
                &[&end],
            )
            .unwrap()
            .get(0)
    });
    let ticks: i64 = client
        .query_one(
            "select count(*) from pgq.tick where tick_time >= $1 and tick_time < $2",
            &[&start, &end],
        )
        .unwrap()
        .get(0);
    check(
        &daemon,
        (30..=70).contains(&ticks),
        &format!("{ticks} ticks in 5 s at ticker_period = 0.1"),
    );
}

/// pgqd's log lines keep their format: `LOG [db]: pgq version ok: 3.5` after
/// `LOG Starting pgqd`, then with stats_period = 1 the stats line
/// `LOG {ticks: N, maint: N, retry: N}` counting ticker calls and maintenance rounds.
#[test]
fn version_and_stats_lines() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "stats");
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &[
            "ticker_period = 0.2",
            "maint_period = 0.5",
            "stats_period = 1",
        ],
    ));
    wait_for(&daemon, "a stats line with ticks and maint", || {
        stats_lines(&daemon.output())
            .iter()
            .any(|&(ticks, maint, _)| ticks > 0 && maint > 0)
    });
    let output = daemon.output();
    let lines: Vec<&str> = output.lines().collect();
    let position = |what: &str, found: &dyn Fn(&str) -> bool| {
        let at = lines.iter().position(|l| found(l));
        at.unwrap_or_else(|| panic!("no {what} line; pgqd output:\n{output}"))
    };
    let starting = position("Starting", &|l| l.contains(" LOG Starting pgqd "));
    // pgq 3.5 as Debian packages it says "3.5"; built from its 3.5.2 tarball, "3.5.2".
    let version_ok = position("version", &|l| {
        l.contains(&format!(" LOG [{db}]: pgq version ok: 3.5"))
    });
    let busy_stats = position("stats", &|l| parse_stats(l).is_some_and(|s| s.0 > 0));
    check(
        &daemon,
        starting < version_ok && version_ok < busy_stats,
        "Starting, then pgq version ok, then stats with ticks",
    );
}

/// The `(ticks, maint, retry)` of every stats line in `output`.
pub fn stats_lines(output: &str) -> Vec<(u64, u64, u64)> {
    output.lines().filter_map(parse_stats).collect()
}

/// `... LOG {ticks: 1, maint: 2, retry: 3}` as `(1, 2, 3)`.
fn parse_stats(line: &str) -> Option<(u64, u64, u64)> {
    let body = line.split_once(" LOG {ticks: ")?.1.strip_suffix('}')?;
    let (ticks, rest) = body.split_once(", maint: ")?;
    let (maint, retry) = rest.split_once(", retry: ")?;
    Some((
        ticks.parse().ok()?,
        maint.parse().ok()?,
        retry.parse().ok()?,
    ))
}

/// connection_lifetime = 1: the ticker connection is replaced about every second (a
/// new backend runs `select pgq.ticker()`), the old one is closed, and ticking goes on.
#[test]
fn ticker_connection_is_renewed_after_its_lifetime() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "lifetime");
    eager_queue(cluster, &db, "q");
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &["ticker_period = 0.2", "connection_lifetime = 1"],
    ));
    let mut observer = cluster.connect("postgres");
    let mut tickers = std::collections::BTreeSet::new();
    wait_for(&daemon, "three successive ticker connections", || {
        let held = pgqd_backends(&mut observer, &db);
        check(&daemon, held <= 2, &format!("{held} pgqd connections"));
        let rows = observer
            .query(
                "select pid from pg_stat_activity where application_name = 'pgqd' and datname = $1 and query like 'select pgq.ticker()%'",
                &[&db],
            )
            .unwrap();
        tickers.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
        tickers.len() >= 3
    });
    let ticks = all_ticks(cluster, &db);
    wait_for(&daemon, "ticking going on", || {
        all_ticks(cluster, &db) > ticks + 3
    });
}

/// With pgq's default queue settings (a tick when `ticker_max_lag`, 3 s, has passed
/// since the last one and events wait) and events flowing, ticks come every 3 s, not
/// every 4: with calls exactly a period apart, `now() - tick_time` at the third call
/// lands within a millisecond of 3 s and falls short half the time, so the calls are
/// spaced a little over the period, as pgqd 3.5's drifting ones are.
#[test]
fn default_ticker_max_lag_is_met_on_time() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "maxlag");
    let mut client = cluster.connect(&db);
    client
        .batch_execute("select pgq.create_queue('q')")
        .unwrap();
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 1"]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        let mut client = cluster.connect(&db);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .batch_execute("select pgq.insert_event('q', 't', 'x')")
                    .unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let intervals = |client: &mut postgres::Client| -> Vec<f64> {
        client
            .query(
                "select extract(epoch from tick_time - lag(tick_time) over (order by tick_id))::float8
                   from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue
                  where q.queue_name = 'q' order by tick_id",
                &[],
            )
            .unwrap()
            .iter()
            .filter_map(|r| r.get::<_, Option<f64>>(0))
            .collect()
    };
    // The first interval starts at the queue's creation tick: left out.
    let mut seen = Vec::new();
    wait_for(&daemon, "seven ticks", || {
        seen = intervals(&mut client);
        seen.len() >= 7
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.join().unwrap();
    let late: Vec<f64> = seen[1..].iter().copied().filter(|&s| s > 3.5).collect();
    check(
        &daemon,
        late.is_empty(),
        &format!("ticks more than 3.5 s apart with ticker_max_lag 3 s: {seen:?}"),
    );
}
