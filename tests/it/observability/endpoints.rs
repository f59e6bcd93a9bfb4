//! The HTTP listener's endpoints against a running daemon: `/metrics`, `/livez`,
//! `/readyz`, `/healthz`, `/status`, and what it answers to anything else.

use std::time::Duration;

use crate::engine::{
    all_ticks, detecting, eager_queue, ident, install_pgq, pgq_db, serving, wait_for,
};
use crate::harness::{Cluster, Daemon, unique};

use super::{Exposition, free_port, get, listen_on, metrics, request, wait_long};

/// Every family the listener may serve; the names are fixed so that dashboards and
/// alert rules can rely on them.
pub const FAMILIES: &[&str] = &[
    "pgqd_build_info",
    "pgqd_databases",
    "pgqd_last_tick_timestamp_seconds",
    "pgqd_ticker_calls",
    "pgqd_maint_operations",
    "pgqd_maint_rounds",
    "pgqd_retry_events",
    "pgqd_errors",
    "pgqd_outages",
    "pgqd_connections",
    "pgqd_foreign_ticker",
    "pgqd_leader",
    "pgqd_queue_stats_timestamp_seconds",
    "pgqd_ticker_call_duration_seconds",
    "pgq_queue_ticker_lag_seconds",
    "pgq_queue_ticker_idle_period_seconds",
    "pgq_queue_new_events",
    "pgq_queue_events",
    "pgq_queue_last_rotation_timestamp_seconds",
    "pgq_queue_ticker_paused",
    "pgq_consumer_lag_seconds",
    "pgq_consumer_last_seen_seconds",
    "pgq_consumer_pending_events",
];

/// Families whose samples are not per database.
const WHOLE_DAEMON: &[&str] = &[
    "pgqd_build_info",
    "pgqd_databases",
    "pgqd_ticker_call_duration_seconds",
];

/// Registers consumer `consumer` on `queue` in `db`.
fn register(cluster: &Cluster, db: &str, queue: &str, consumer: &str) {
    cluster
        .connect(db)
        .query("select pgq.register_consumer($1, $2)", &[&queue, &consumer])
        .unwrap();
}

/// Asserts that every sample belongs to a declared family with a fixed name, that
/// every per-database sample has a `datname`, and that all fixed families are declared.
fn assert_well_formed(page: &Exposition, daemon: &Daemon) {
    for sample in &page.samples {
        let family = page.family_of(&sample.name);
        assert!(
            family.is_some_and(|f| FAMILIES.contains(&f)),
            "sample {sample:?} has no known family; families: {:?}",
            page.families
        );
        if !WHOLE_DAEMON.contains(&family.unwrap_or_default()) {
            assert!(sample.labels.contains_key("datname"), "{sample:?}");
        }
    }
    let missing: Vec<&&str> = FAMILIES
        .iter()
        .filter(|f| !page.families.contains_key(**f))
        .collect();
    assert!(
        missing.is_empty(),
        "families not declared: {missing:?}; pgqd output:\n{}",
        daemon.output()
    );
}

/// `/metrics` parses as OpenMetrics: every sample line belongs to a known family,
/// every per-database sample carries `datname`, and database, queue and consumer
/// names holding a double quote, a backslash and a newline come back exactly after
/// unescaping, with their ticks, queue and consumer figures.
#[test]
fn metrics_parse_and_escape_odd_names() {
    let cluster = Cluster::start();
    let odd = format!("odd \"q\" back\\slash\nline {}", unique("n"));
    let (queue, consumer) = ("q \"1\"\\x", "c\n\"2\"");
    cluster.exec("postgres", &format!("create database {}", ident(&odd)));
    install_pgq(&cluster, &odd);
    eager_queue(&cluster, &odd, queue);
    register(&cluster, &odd, queue, consumer);
    let plain = pgq_db(&cluster, "plain");
    eager_queue(&cluster, &plain, "q");
    let port = free_port();
    let daemon = Daemon::start(&detecting(
        &cluster,
        "postgres",
        &[
            "ticker_period = 0.2",
            "check_period = 0.5",
            "queue_stats_period = 1",
            &listen_on(port),
        ],
    ));
    let consumer_seen = |page: &Exposition| {
        page.value(
            "pgq_consumer_pending_events",
            &[("datname", &odd), ("queue", queue), ("consumer", consumer)],
        )
        .is_some()
    };
    // A tick shows as an ok ticker call: pgqd_last_tick_timestamp_seconds is there
    // before the first tick too (when ticks began to be expected).
    let ticked = |page: &Exposition, db: &str| {
        page.value(
            "pgqd_ticker_calls_total",
            &[("datname", db), ("result", "ok")],
        )
        .is_some_and(|n| n >= 1.0)
    };
    wait_for(
        &daemon,
        "ticks and consumer figures of both databases",
        || {
            request(port, "GET", "/metrics").is_some_and(|r| {
                Exposition::parse(&r.body).is_ok_and(|page| {
                    consumer_seen(&page) && [&odd, &plain].iter().all(|db| ticked(&page, db))
                })
            })
        },
    );
    let page = metrics(port);
    assert_well_formed(&page, &daemon);
    for db in [&odd, &plain] {
        assert!(ticked(&page, db), "{db:?}");
        let last = page.value("pgqd_last_tick_timestamp_seconds", &[("datname", db)]);
        assert!(last.is_some(), "{db:?}: no last tick");
    }
    let idle = page.value(
        "pgq_queue_ticker_idle_period_seconds",
        &[("datname", &odd), ("queue", queue)],
    );
    assert_eq!(idle, Some(0.0), "the eager queue's idle period");
    assert_eq!(
        page.value("pgqd_databases", &[("state", "ticking")]),
        Some(2.0)
    );
    assert!(page.value("pgqd_databases", &[("state", "no_pgq")]) >= Some(1.0));
    assert!(
        page.named("pgqd_build_info")
            .any(|s| s.labels.contains_key("version"))
    );
    assert!(
        page.value("pgqd_ticker_call_duration_seconds_count", &[]) >= Some(2.0),
        "the duration histogram counts the calls"
    );
}

/// `/livez` and `/readyz` answer 200 with a JSON body once the first listing is
/// done; `/healthz` answers 200 while the database ticks; HEAD gets the status without
/// a body; an unknown path is 404, POST is 405, a malformed max_tick_age is 400.
#[test]
fn probes_and_routing() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "probes");
    eager_queue(cluster, &db, "q");
    let port = free_port();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &["ticker_period = 0.2", &listen_on(port)],
    ));
    wait_for(&daemon, "/readyz 200", || {
        request(port, "GET", "/readyz").is_some_and(|r| r.status == 200)
    });
    let ready = get(port, "/readyz");
    assert_eq!(ready.json()["status"], "ok", "{ready:?}");
    assert!(ready.headers.contains("application/json"), "{ready:?}");
    let live = get(port, "/livez");
    assert_eq!((live.status, &live.json()["status"]), (200, &"ok".into()));
    wait_for(&daemon, "/healthz 200 with the database ticking", || {
        all_ticks(cluster, &db) > 0 && get(port, "/healthz").status == 200
    });
    let head = request(port, "HEAD", "/healthz").expect("HEAD answered");
    assert_eq!((head.status, head.body.as_str()), (200, ""), "{head:?}");
    let head = request(port, "HEAD", "/metrics").expect("HEAD answered");
    assert_eq!((head.status, head.body.as_str()), (200, ""), "{head:?}");
    assert!(get(port, "/metrics").headers.contains("openmetrics-text"));
    let missing = get(port, "/nope");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.json()["status"], "error");
    let post = request(port, "POST", "/metrics").expect("POST answered");
    assert_eq!(post.status, 405, "{post:?}");
    let bad = get(port, "/healthz?max_tick_age=soon");
    assert_eq!(bad.status, 400, "{bad:?}");
}

/// While a transaction holds `lock table pgq.queue in access exclusive mode` in one
/// database (ticker_timeout = 1), `/healthz?max_tick_age=3s` answers 503 naming that
/// database alone with its last error (the ticker call that timed out); once the
/// lock is released it answers 200 again.
#[test]
fn healthz_names_the_stale_database_and_why() {
    let cluster = Cluster::shared();
    let (locked, free) = (pgq_db(cluster, "stale"), pgq_db(cluster, "fresh"));
    eager_queue(cluster, &locked, "q");
    eager_queue(cluster, &free, "q");
    let port = free_port();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&locked, &free],
        &[
            "ticker_period = 0.2",
            "ticker_timeout = 1",
            &listen_on(port),
        ],
    ));
    let health = || request(port, "GET", "/healthz?max_tick_age=3s");
    wait_for(&daemon, "both databases ticking, /healthz 200", || {
        all_ticks(cluster, &locked) > 0
            && all_ticks(cluster, &free) > 0
            && health().is_some_and(|r| r.status == 200)
    });

    let mut holder = cluster.connect(&locked);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("lock table pgq.queue in access exclusive mode")
        .unwrap();
    wait_for(&daemon, "/healthz 503", || {
        health().is_some_and(|r| r.status == 503)
    });
    let body = health().expect("answered").json();
    assert_eq!(body["status"], "stale", "{body}");
    assert_eq!(body["max_tick_age_seconds"], 3.0, "{body}");
    let stale = body["stale"].as_array().expect("a stale list");
    assert_eq!(stale.len(), 1, "only the locked database: {body}");
    assert_eq!(stale[0]["datname"], locked.as_str(), "{body}");
    assert!(stale[0]["seconds"].as_f64() >= Some(3.0), "{body}");
    let why = stale[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("ticker") && why.contains("timed out"),
        "the reason names the timed-out ticker call: {body}"
    );

    lock.commit().unwrap();
    wait_long(
        &daemon,
        "/healthz 200 again",
        Duration::from_secs(30),
        || health().is_some_and(|r| r.status == 200),
    );
}

/// `/status` (queue_stats_period = 1) shows the database as ticking with its last
/// tick, its queue, and its consumer with the pending events `pgq.get_consumer_info()`
/// reports after three events were inserted.
#[test]
fn status_shows_queues_and_consumers() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "status");
    eager_queue(cluster, &db, "q");
    register(cluster, &db, "q", "c");
    cluster.exec(
        &db,
        "select pgq.insert_event('q', 't', 'x') from generate_series(1, 3)",
    );
    let port = free_port();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &[
            "ticker_period = 0.2",
            "queue_stats_period = 1",
            &listen_on(port),
        ],
    ));
    let mut client = cluster.connect(&db);
    let mut pgq_says = || -> i64 {
        client
            .query_one(
                "select pending_events from pgq.get_consumer_info('q', 'c')",
                &[],
            )
            .unwrap()
            .get(0)
    };
    wait_for(&daemon, "the events ticked into a batch", || pgq_says() > 0);
    let expected = pgq_says();
    let pending = |status: &serde_json::Value| {
        status["databases"][&db]["consumers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "c"))
            .and_then(|c| c["pending_events"].as_i64())
    };
    wait_for(
        &daemon,
        "/status with the consumer's pending events",
        || {
            request(port, "GET", "/status")
                .and_then(|r| serde_json::from_str(&r.body).ok())
                .is_some_and(|s| pending(&s) == Some(expected))
        },
    );
    let status = get(port, "/status").json();
    let database = &status["databases"][&db];
    assert_eq!(database["state"], "ticking", "{status}");
    assert!(database["last_tick"].as_f64() > Some(1.0e9), "{status}");
    assert_eq!(status["ready"], true, "{status}");
    let queues = database["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), 1, "{status}");
    assert_eq!(queues[0]["name"], "q", "{status}");
    assert_eq!(queues[0]["paused"], false, "{status}");
    assert_eq!(queues[0]["events_total"], 3, "{status}");
    let consumer = &database["consumers"][0];
    assert_eq!(
        (&consumer["queue"], &consumer["name"]),
        (&"q".into(), &"c".into())
    );
}
