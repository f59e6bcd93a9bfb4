//! One turn of each loop of a database task, driven through the library against a
//! real cluster: the daemon's loops only repeat these turns on their schedules.

use std::sync::Arc;
use std::time::Duration;

use pgconninfo::{ConnStr, Defaults, resolve};
use pgqd::config::Config;
use pgqd::db::{DbContext, Housekeeping, Ticking};
use pgqd::stats::{ConsumerStats, QueueStats, Stats};
use tokio::sync::{Notify, Semaphore, watch};
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
    let clocks = pgqd::clock::Clocks::new();
    DbContext {
        name: db.to_string(),
        target: resolve(&config.base_connstr, db, &defaults).unwrap(),
        settings: watch::channel(Arc::new(config)).1,
        stats: Arc::new(Arc::new(Stats::default()).register(db)),
        relist: Arc::new(Notify::new()),
        looks: watch::channel(Arc::new(Default::default())).1,
        connect_slots: Arc::new(Semaphore::new(1)),
        clocks: clocks.clone(),
        engines: pgqd::db::engine::Engines::new(clocks),
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
    assert_eq!(ctx.stats.all().totals().ticks, 1);
}

/// One housekeeping turn on the ticker's session moves a retried event back into its
/// queue without opening a second connection; once the maintenance round is due, a
/// turn hands it to a short-lived second connection, which runs it to its end. Both
/// are counted in the stats.
#[test]
fn housekeeping_turn_retries_inline_and_maintains_aside() {
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
        // Scheduled as a database named "turns" (its first maintenance round is
        // 47 % into maint_period, two minutes from now): the retry round alone.
        let config = ctx.config();
        let mut housekeeping = Housekeeping::new("turns", &config);
        let result = housekeeping
            .turn(&ctx, &session, &config, Duration::from_secs(10))
            .await;
        assert!(result.is_ok());
        assert!(!housekeeping.slow_work_running());
        // The sync client cannot run inside the runtime: ask from a thread of its own
        // while the session is still open.
        let held =
            std::thread::scope(|s| s.spawn(|| pgqd_backends(&mut observer, &db)).join()).unwrap();
        assert_eq!(ctx.stats.all().totals().maint, 0, "maintained inline");
        // With a 1 ms maint_period the round is due at once, and goes aside.
        let config = Config {
            maint_period: Duration::from_millis(1),
            ..(*config).clone()
        };
        let mut housekeeping = Housekeeping::new("turns", &config);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let result = housekeeping
            .turn(&ctx, &session, &config, Duration::from_secs(10))
            .await;
        assert!(result.is_ok());
        assert!(housekeeping.slow_work_running() || ctx.stats.all().totals().maint == 1);
        housekeeping.finish().await;
        held
    });
    assert_eq!(
        retry_queue(&mut client),
        0,
        "the retried event is still waiting"
    );
    let totals = ctx.stats.all().totals();
    assert_eq!((totals.retry, totals.maint), (1, 1));
    assert_eq!(held, 1, "connections held during the turn");
}

/// The queue and consumer figures as the daemon reads them, on a session of its own.
fn read_figures(ctx: &DbContext) -> (Vec<QueueStats>, Vec<ConsumerStats>) {
    runtime().block_on(async {
        let session = ctx.connect().await.unwrap();
        let limits = pgqd::jobs::Limits {
            timeout: Duration::from_secs(10),
            shutdown: &ctx.shutdown,
        };
        pgqd::jobs::queue_stats::collect(&session, &limits)
            .await
            .unwrap()
    })
}

/// The queue and consumer figures read with plain SQL are what pgq's own
/// `get_queue_info()` and `get_consumer_info()` report, for an idle queue, a queue with
/// new events, a paused one, a queue without any tick (and its consumer) and consumers
/// behind and caught up; a queue whose event sequence is gone keeps the other queues'
/// figures (pgq's functions fail for all).
#[test]
fn queue_figures_are_pgqs_own() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "figures");
    let mut client = cluster.connect(&db);
    client
        .batch_execute(
            "select pgq.create_queue('busy');
             select pgq.set_queue_config('busy', 'ticker_max_lag', '0');
             select pgq.set_queue_config('busy', 'ticker_idle_period', '0');
             select pgq.create_queue('idle');
             select pgq.create_queue('paused');
             select pgq.set_queue_config('paused', 'ticker_paused', '1');
             select pgq.register_consumer('busy', 'behind');
             select pgq.register_consumer('busy', 'current');
             select pgq.insert_event('busy', 't', 'x') from generate_series(1, 3);
             select pgq.ticker();
             select pgq.insert_event('busy', 't', 'y') from generate_series(1, 4);
             select pgq.ticker();
             select pgq.insert_event('busy', 't', 'z') from generate_series(1, 5);
             select pgq.create_queue('tickless');
             select pgq.register_consumer('tickless', 'waiting');
             select pgq.insert_event('tickless', 't', 'w');
             delete from pgq.tick
              where tick_queue = (select queue_id from pgq.queue where queue_name = 'tickless');",
        )
        .unwrap();
    // `current` reads its batches up to the latest tick; `behind` reads none.
    while let Some(batch) = client
        .query_one("select pgq.next_batch('busy', 'current')", &[])
        .unwrap()
        .get::<_, Option<i64>>(0)
    {
        client
            .execute("select pgq.finish_batch($1)", &[&batch])
            .unwrap();
    }

    let ctx = context(cluster, &db);
    let (queues, consumers) = read_figures(&ctx);

    let pgq_queues = client
        .query(
            "select i.queue_name, extract(epoch from i.ticker_lag)::float8,
                    extract(epoch from i.queue_ticker_idle_period)::float8, i.ev_new,
                    pgq.seq_getval(q.queue_event_seq),
                    extract(epoch from i.queue_switch_time)::float8, i.queue_ticker_paused
               from pgq.get_queue_info() i join pgq.queue q using (queue_name) order by 1",
            &[],
        )
        .unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["busy", "idle", "paused", "tickless"]);
    assert_eq!(queues.len(), pgq_queues.len());
    for (ours, theirs) in queues.iter().zip(&pgq_queues) {
        let name = &ours.name;
        assert_eq!(ours.new_events, theirs.get(3), "{name}: new events");
        assert_eq!(ours.events_total, theirs.get(4), "{name}: events total");
        assert_eq!(ours.idle_period, theirs.get(2), "{name}: idle period");
        assert_eq!(ours.last_rotation, theirs.get(5), "{name}: last rotation");
        assert_eq!(ours.paused, theirs.get::<_, bool>(6), "{name}: paused");
        let lag: Option<f64> = theirs.get(1);
        assert!(
            close(ours.ticker_lag, lag),
            "{name}: ticker lag {:?} vs {lag:?}",
            ours.ticker_lag
        );
    }
    let tickless = &queues[3];
    assert_eq!(
        (tickless.ticker_lag, tickless.new_events),
        (None, None),
        "tickless: no lag, no new events"
    );
    assert!(tickless.events_total.is_some_and(|n| n > 0));
    assert_eq!(
        queues[0].new_events,
        Some(5),
        "busy: events since the last tick"
    );

    let pgq_consumers = client
        .query(
            "select queue_name, consumer_name, extract(epoch from lag)::float8,
                    extract(epoch from last_seen)::float8, pending_events
               from pgq.get_consumer_info() order by 1, 2",
            &[],
        )
        .unwrap();
    assert_eq!(consumers.len(), 3);
    assert_eq!(consumers.len(), pgq_consumers.len());
    for (ours, theirs) in consumers.iter().zip(&pgq_consumers) {
        let name = &ours.name;
        assert_eq!(
            (ours.queue.as_str(), name.as_str()),
            (theirs.get(0), theirs.get(1))
        );
        assert_eq!(ours.pending_events, theirs.get(4), "{name}: pending events");
        for (figure, value, index) in [("lag", ours.lag, 2), ("last seen", ours.last_seen, 3)] {
            let pgq: Option<f64> = theirs.get(index);
            assert!(close(value, pgq), "{name}: {figure} {value:?} vs {pgq:?}");
        }
    }
    let pending: Vec<Option<i64>> = consumers.iter().map(|c| c.pending_events).collect();
    assert!(
        pending[0].is_some_and(|n| n > 0) && pending[1] == Some(0) && pending[2].is_none(),
        "behind has the two ticks' events pending, current none, waiting no figure: {pending:?}"
    );
    assert_eq!(consumers[2].lag, None, "waiting: no tick, no lag");

    // pgq's functions fail for every queue once one event sequence is gone; ours
    // leaves that queue's event figures empty.
    client
        .batch_execute(
            "do $$ begin execute 'drop sequence ' || (select queue_event_seq from pgq.queue where queue_name = 'paused') || ' cascade'; end $$",
        )
        .unwrap();
    assert!(
        client
            .query("select * from pgq.get_queue_info()", &[])
            .is_err()
    );
    let (queues, _) = read_figures(&ctx);
    let events: Vec<(&str, Option<i64>)> = queues
        .iter()
        .map(|q| (q.name.as_str(), q.new_events))
        .collect();
    assert_eq!(
        events,
        [
            ("busy", Some(5)),
            ("idle", Some(0)),
            ("paused", None),
            ("tickless", None)
        ]
    );
}

/// Two ages in seconds agree: both absent, or both present within a few seconds (they
/// were read at different moments).
fn close(ours: Option<f64>, theirs: Option<f64>) -> bool {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) => (ours - theirs).abs() < 5.0,
        (ours, theirs) => ours.is_none() && theirs.is_none(),
    }
}
