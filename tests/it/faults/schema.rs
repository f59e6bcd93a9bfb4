//! Faults of what the daemon works on: pgq dropped, the database dropped, a
//! maintenance function that fails.

use crate::engine::{check, ident, wait_for};
use crate::harness::Cluster;

use super::rig::PREPARE_QUEUE;
use super::{Bounds, FAULT, Rig};

/// `drop extension pgq cascade` in one database (its events go with it), then pgq
/// created again: the other databases keep ticking and lose nothing; the dropped one
/// ticks again after at most a check_period.
#[test]
fn pgq_dropped_and_recreated() {
    let cluster = Cluster::shared();
    let mut rig = Rig::start(cluster, 3, &[]);
    rig.forget(0);
    rig.begin("pgq dropped and re-created", &[0]);
    rig.watch(0).exec("drop extension pgq cascade");
    rig.hold(FAULT);
    rig.watch(0)
        .exec(&format!("create extension pgq; {PREPARE_QUEUE}"));
    rig.end();
    rig.finish(Bounds::DEFAULT);
}

/// `drop database ... with (force)` of a served database, then one of the same name
/// created with pgq: the daemon stays up, the others keep ticking, the new database
/// is ticked after at most a check_period.
#[test]
fn database_dropped() {
    let cluster = Cluster::shared();
    let mut rig = Rig::start(cluster, 3, &[]);
    rig.forget(0);
    let db = ident(&rig.dbs[0]);
    rig.begin("database dropped and re-created", &[0]);
    cluster.exec("postgres", &format!("drop database {db} with (force)"));
    rig.hold(FAULT);
    cluster.exec("postgres", &format!("create database {db}"));
    rig.recreated(0);
    rig.watch(0)
        .exec(&format!("create extension pgq; {PREPARE_QUEUE}"));
    rig.end();
    rig.finish(Bounds::DEFAULT);
}

/// A queue's extra maintenance function raises in every round: ticking and the other
/// maintenance operations of that database go on, the ones before it in the round
/// (with a rotation period of 1 s, both rotation steps are called in every round)
/// and the ones after it (a second extra function, logging its calls, is called);
/// the failure is logged without flooding the log.
#[test]
fn failing_maintenance_function() {
    let cluster = Cluster::shared();
    let mut rig = Rig::start(cluster, 3, &[]);
    rig.watch(0).exec(
        "create function public.broken_maint(text) returns int language plpgsql
           as $$ begin raise exception 'maintenance is broken'; end $$;
         create table public.maint_log(at timestamptz not null default clock_timestamp());
         create function public.logged_maint(text) returns int language sql
           as $$ insert into public.maint_log default values; select 0 $$",
    );
    let rounds_before = maint_rounds(&mut rig);
    rig.begin("failing maintenance function", &[]);
    rig.watch(0).exec(
        "update pgq.queue set queue_extra_maint = array['public.broken_maint', 'public.logged_maint'],
           queue_rotation_period = '1 second'",
    );
    wait_for(&rig.daemon, "the failure logged", || {
        rig.daemon.output().contains("maintenance is broken")
    });
    let logged_before = logged_maint(&mut rig);
    let steps_before = [1, 2].map(|step| rotation_steps(&mut rig, step));
    rig.hold(FAULT);
    let rounds = maint_rounds(&mut rig) - rounds_before;
    check(
        &rig.daemon,
        rounds >= 3,
        &format!("{rounds} maintenance rounds during the fault"),
    );
    let after = logged_maint(&mut rig) - logged_before;
    check(
        &rig.daemon,
        after >= 3,
        &format!("{after} calls of the operation after the failing one"),
    );
    for (step, before) in [1, 2].into_iter().zip(steps_before) {
        let calls = rotation_steps(&mut rig, step) - before;
        let what = format!("{calls} calls of rotation step {step} during the fault");
        check(&rig.daemon, calls >= 3, &what);
    }
    rig.watch(0).exec(
        "create or replace function public.broken_maint(text) returns int language sql
           as $$ select 0 $$;
         update pgq.queue set queue_rotation_period = '2 hours'",
    );
    rig.end();
    rig.finish(Bounds::DEFAULT);
}

/// `pgq.maint_rotate_tables_step<step>()` calls in the first database (with a
/// consumer that has not moved, step 1 is called but skips the rotation).
fn rotation_steps(rig: &mut Rig, step: i32) -> i64 {
    let row = rig.watch(0).row(
        "select coalesce(sum(calls), 0)::int8 from pg_stat_user_functions where schemaname = 'pgq' and funcname = 'maint_rotate_tables_step' || $1",
        &[&step.to_string()],
    );
    row.expect("pg_stat_user_functions").get(0)
}

/// Calls of `public.logged_maint()` in the first database.
fn logged_maint(rig: &mut Rig) -> i64 {
    let row = rig
        .watch(0)
        .row("select count(*) from public.maint_log", &[]);
    row.expect("public.maint_log").get(0)
}

/// `pgq.maint_operations()` calls in the first database.
fn maint_rounds(rig: &mut Rig) -> i64 {
    let row = rig.watch(0).row(
        "select coalesce(sum(calls), 0)::int8 from pg_stat_user_functions where schemaname = 'pgq' and funcname = 'maint_operations'",
        &[],
    );
    row.expect("pg_stat_user_functions").get(0)
}
