//! One turn of each loop of a database task, driven through the library against a
//! real cluster: the daemon's loops only repeat these turns on their schedules.

use std::sync::Arc;
use std::time::Duration;

use pgqd::config::Config;
use pgqd::conninfo::{ConnStr, Defaults, resolve};
use pgqd::db::{DbContext, Housekeeping, Ticking};
use pgqd::stats::Stats;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::{eager_queue, pgq_db, pgqd_backends};
use crate::harness::{Cluster, tick_count};

/// A database task's context for `db`, with default settings.
fn context(cluster: &Cluster, db: &str) -> DbContext {
    let config = Config {
        base_connstr: ConnStr::new(cluster.connstr()),
        ..Config::default()
    };
    let defaults = Defaults {
        application_name: "pgqd".into(),
        connect_timeout: config.connect_timeout,
    };
    DbContext {
        name: db.to_string(),
        target: resolve(&config.base_connstr, db, &defaults).unwrap(),
        settings: watch::channel(Arc::new(config)).1,
        stats: Arc::new(Stats::default()),
        connect_slots: Arc::new(Semaphore::new(1)),
        shutdown: CancellationToken::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One ticker turn calls `pgq.ticker()` once: an eager queue gets exactly one tick,
/// and the stats count one.
#[test]
fn ticker_turn_ticks_once() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "turn_tick");
    eager_queue(cluster, &db, "q");
    let ctx = context(cluster, &db);
    let before = tick_count(cluster, &db, "q");
    runtime().block_on(async {
        let session = ctx.connect().await.unwrap();
        let mut ticking = Ticking::new(&ctx, session);
        let config = ctx.config();
        // A zero-length period leaves no time for housekeeping: the ticker call alone.
        let config = Config {
            ticker_period: Duration::ZERO,
            ..(*config).clone()
        };
        assert!(ticking.turn(&config).await.is_ok());
        assert!(ticking.ticked());
    });
    assert_eq!(tick_count(cluster, &db, "q"), before + 1);
    assert_eq!(ctx.stats.totals().ticks, 1);
}

/// One housekeeping turn on the ticker's session moves a retried event back into its
/// queue and runs a maintenance round, both counted in the stats, without opening a
/// second connection.
#[test]
fn housekeeping_turn_retries_and_maintains() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "turn_hk");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    // Each statement in its own transaction, so the tick sees the event committed.
    for sql in [
        "select pgq.register_consumer('q', 'c')",
        "select pgq.insert_event('q', 'test', 'again')",
        "select pgq.ticker()",
        "select pgq.event_retry(b, e.ev_id, 0), pgq.finish_batch(b)
           from pgq.next_batch('q', 'c') b, pgq.get_batch_events(b) e",
    ] {
        client.batch_execute(sql).unwrap();
    }
    let retry_queue = |client: &mut postgres::Client| -> i64 {
        client
            .query_one("select count(*) from pgq.retry_queue", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(retry_queue(&mut client), 1);
    let ctx = context(cluster, &db);
    let mut observer = cluster.connect("postgres");
    let held = runtime().block_on(async {
        let session = ctx.connect().await.unwrap();
        let mut housekeeping = Housekeeping::new();
        let config = ctx.config();
        let result = housekeeping
            .turn(&ctx, &session, &config, Duration::from_secs(10))
            .await;
        assert!(result.is_ok());
        assert!(!housekeeping.slow_work_running());
        // The sync client cannot run inside the runtime: ask from a thread of its own
        // while the session is still open.
        std::thread::scope(|s| s.spawn(|| pgqd_backends(&mut observer, &db)).join()).unwrap()
    });
    assert_eq!(
        retry_queue(&mut client),
        0,
        "the retried event is still waiting"
    );
    let totals = ctx.stats.totals();
    assert_eq!((totals.retry, totals.maint), (1, 1));
    assert_eq!(held, 1, "connections held during the turn");
}
