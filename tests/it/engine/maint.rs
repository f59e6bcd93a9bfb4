//! The maintenance job: table rotation and the operations `pgq.maint_operations()` lists.

use crate::harness::{Cluster, Daemon};

use super::{check, eager_queue, lines_with, pgq_db, pgqd_backends, serving, wait_for};

/// With a queue rotation period of 2 seconds and a consumer that keeps finishing
/// batches, the daemon's maintenance rounds (maint_period = 1) rotate the event
/// tables: `queue_cur_table` advances.
#[test]
fn rotation_advances_current_table() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "rotate");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client
        .batch_execute(
            "select pgq.set_queue_config('q', 'rotation_period', '2 seconds');
             select pgq.register_consumer('q', 'c');",
        )
        .unwrap();
    let table = |client: &mut postgres::Client| -> i32 {
        client
            .query_one(
                "select queue_cur_table from pgq.queue where queue_name = 'q'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let first = table(&mut client);
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &["ticker_period = 0.2", "maint_period = 1"],
    ));
    wait_for(&daemon, "queue_cur_table to advance", || {
        client
            .batch_execute(
                "select pgq.insert_event('q', 'test', 'x');
                 select pgq.finish_batch(b) from pgq.next_batch('q', 'c') b where b is not null;",
            )
            .unwrap();
        table(&mut client) != first
    });
}

/// Extra maintenance functions of a call-recording kind: each inserts a row
/// `(round, fn, arg)`; `first` starts a new round.
const RECORDER: &str = r#"
create table calls (id serial, round int, fn text, arg text);
create function note(f text, q text) returns void language sql as
  $$ insert into calls (round, fn, arg)
     select coalesce(max(round), 0) + (f = 'first')::int, f, q from calls $$;
create function public.first(q text) returns int language plpgsql as
  $$ begin perform note('first', q); return 0; end $$;
create function public.last(q text) returns int language plpgsql as
  $$ begin perform note('last', q); return 0; end $$;
"#;

/// A queue's `queue_extra_maint` functions are called with the queue name, in order,
/// once per round: one that returns 1 twice then 0 is called three times in a row; one
/// that raises is named in the log and does not stop the next ones.
#[test]
fn extra_maint_functions_are_called() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "extra");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client.batch_execute(RECORDER).unwrap();
    client
        .batch_execute(
            r#"
            create function public.boom(q text) returns int language plpgsql as
              $$ begin perform note('boom', q); raise exception 'boom went off'; end $$;
            create function public.again(q text) returns int language plpgsql as
              $$ begin
                   perform note('again', q);
                   return (select (count(*) < 3)::int from calls
                            where fn = 'again' and round = (select max(round) from calls));
                 end $$;
            update pgq.queue set queue_extra_maint =
              array['public.first', 'boom', 'public.again', 'public.last']
             where queue_name = 'q';
            "#,
        )
        .unwrap();
    let daemon = Daemon::start(&serving(cluster, &[&db], &["maint_period = 0.5"]));
    let rounds = |client: &mut postgres::Client| -> i32 {
        client
            .query_one("select coalesce(max(round), 0) from calls", &[])
            .unwrap()
            .get(0)
    };
    wait_for(&daemon, "three maintenance rounds", || {
        rounds(&mut client) >= 3
    });
    for round in 1..=2 {
        let calls: Vec<(String, String)> = client
            .query(
                "select fn, arg from calls where round = $1 order by id",
                &[&round],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let names: Vec<&str> = calls.iter().map(|(f, _)| f.as_str()).collect();
        check(
            &daemon,
            names == ["first", "again", "again", "again", "last"]
                && calls.iter().all(|c| c.1 == "q"),
            &format!("round {round} called {calls:?}"),
        );
    }
    let output = daemon.output();
    check(
        &daemon,
        lines_with(
            &output,
            &[
                "maintenance operation failed",
                "boom went off",
                r#"\"public\".\"boom\"($1)"#,
            ],
        ) >= 1,
        "the failing operation is logged with its name",
    );
}

/// An operation name from `maint_operations()` that is not a valid identifier (here
/// one with a newline, naming a function that does exist) is skipped with a log line,
/// never executed; a name that looks like SQL is quoted as one identifier, so it only
/// fails as an unknown function; the operations after them still run.
#[test]
fn bad_operation_names_are_never_executed() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "badname");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client.batch_execute(RECORDER).unwrap();
    client
        .batch_execute(
            "create function public.\"bad\nname\"(q text) returns int language plpgsql as
               $$ begin perform note('bad', q); return 0; end $$;
             update pgq.queue set queue_extra_maint =
               array['public.first', E'public.bad\\nname', 'public.last(''q''); drop table calls; --', 'public.last']
              where queue_name = 'q';",
        )
        .unwrap();
    let daemon = Daemon::start(&serving(cluster, &[&db], &["maint_period = 0.5"]));
    let count = |client: &mut postgres::Client, f: &str| -> i64 {
        client
            .query_one("select count(*) from calls where fn = $1", &[&f])
            .unwrap()
            .get(0)
    };
    wait_for(&daemon, "two rounds reaching the last operation", || {
        count(&mut client, "last") >= 2
    });
    check(
        &daemon,
        count(&mut client, "bad") == 0,
        "the bad name was executed",
    );
    let output = daemon.output();
    check(
        &daemon,
        lines_with(
            &output,
            &["Bad func name? - \"public.bad\\nname\"", "skipped"],
        ) >= 1,
        "the bad name is logged as skipped",
    );
    check(
        &daemon,
        lines_with(
            &output,
            &["maintenance operation failed", "drop table calls"],
        ) >= 1,
        "the SQL-looking name fails as one identifier",
    );
}

/// An operation that keeps returning 1 is cut off after 1000 calls with a log line,
/// and the operations after it still run (pgqd 3.5 would call it forever).
#[test]
fn endless_operation_is_cut_off() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "endless");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client.batch_execute(RECORDER).unwrap();
    client
        .batch_execute(
            "create function public.forever(q text) returns int language plpgsql as
               $$ begin perform note('forever', q); return 1; end $$;
             update pgq.queue set queue_extra_maint =
               array['public.first', 'public.forever', 'public.last']
              where queue_name = 'q';",
        )
        .unwrap();
    // The first round comes at the database's place in maint_period: within 2 s.
    let daemon = Daemon::start(&serving(cluster, &[&db], &["maint_period = 2"]));
    let count = |client: &mut postgres::Client, f: &str| -> i64 {
        client
            .query_one(
                "select count(*) from calls where round = 1 and fn = $1",
                &[&f],
            )
            .unwrap()
            .get(0)
    };
    wait_for(&daemon, "the operation after the endless one", || {
        count(&mut client, "last") == 1
    });
    let calls = count(&mut client, "forever");
    check(&daemon, calls == 1000, &format!("called {calls} times"));
    check(
        &daemon,
        lines_with(
            &daemon.output(),
            &["still asks for more after 1000 calls", "forever"],
        ) == 1,
        "the cut-off is logged with the operation",
    );
}

/// With autovacuum off, `pgq.maint_operations()` asks for pgq's tables to be
/// vacuumed: the daemon runs those VACUUMs outside a transaction block (the
/// vacuum_count of pgq.tick grows) and no maintenance operation fails.
#[test]
fn vacuum_operations_run() {
    let cluster = Cluster::start_with(&["autovacuum = off"]);
    let db = pgq_db(&cluster, "vacuum");
    eager_queue(&cluster, &db, "q");
    let daemon = Daemon::start(&serving(&cluster, &[&db], &["maint_period = 0.5"]));
    let mut client = cluster.connect(&db);
    wait_for(&daemon, "pgq.tick vacuumed twice", || {
        let vacuums: i64 = client
            .query_one(
                "select vacuum_count from pg_stat_user_tables where schemaname = 'pgq' and relname = 'tick'",
                &[],
            )
            .unwrap()
            .get(0);
        vacuums >= 2
    });
    check(
        &daemon,
        !daemon.output().contains("maintenance operation failed"),
        "a maintenance operation failed",
    );
}

/// A slow maintenance function (3 s of pg_sleep, with ticker_period = 1) runs to its
/// end on the round's second connection: its row commits, the operation after it runs,
/// the ticks stay on time (no gap between two ticks reaches 1.5 x ticker_period) and
/// the second connection is closed afterwards.
#[test]
fn slow_operation_never_holds_up_the_ticks() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "slowmaint");
    eager_queue(cluster, &db, "q");
    let mut client = cluster.connect(&db);
    client.batch_execute(RECORDER).unwrap();
    client
        .batch_execute(
            "create function public.slow(q text) returns int language plpgsql as
               $$ begin perform pg_sleep(3); perform note('slow', q); return 0; end $$;
             update pgq.queue set queue_extra_maint =
               array['public.first', 'public.slow', 'public.last']
              where queue_name = 'q';",
        )
        .unwrap();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &["ticker_period = 1", "maint_period = 5"],
    ));
    let mut observer = cluster.connect("postgres");
    let mut most = 0;
    let done = |client: &mut postgres::Client| -> bool {
        client
            .query_one(
                "select count(*) = 2 from calls where round = 1 and fn in ('slow', 'last')",
                &[],
            )
            .unwrap()
            .get(0)
    };
    wait_for(&daemon, "the slow operation and the one after it", || {
        most = most.max(pgqd_backends(&mut observer, &db));
        done(&mut client)
    });
    check(
        &daemon,
        most == 2,
        &format!("{most} connections at most during the slow operation"),
    );
    wait_for(&daemon, "the second connection closed", || {
        pgqd_backends(&mut observer, &db) == 1
    });
    let gap: f64 = client
        .query_one(
            "select extract(epoch from max(gap))::float8 from (
               select tick_time - lag(tick_time) over (order by tick_id) as gap
                 from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue
                where q.queue_name = 'q' and t.tick_id > 1) g",
            &[],
        )
        .unwrap()
        .get(0);
    check(
        &daemon,
        gap < 1.5,
        &format!("largest gap between two ticks {gap:.3} s with ticker_period 1"),
    );
}
