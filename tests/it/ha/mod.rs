//! High availability: several pgqd instances reaching one database. Only the holder of
//! the database's leader lock ticks; a follower takes over when the leader's session
//! ends; and a real Patroni cluster fails over under a producer and a consumer.
//!
//! Who ticks is seen two ways: a trigger on `pgq.tick` logs the `application_name` of
//! the session that made each tick (each instance has its own), and samples of
//! `pg_stat_activity` count the instances whose backend ran the ticker call recently.

mod exactly_once;
mod foreign;
mod pair;
mod partition;
mod patroni;
mod pooler;

use std::time::Duration;

/// Logs every tick of `pgq.tick` with the ticking session's `application_name` and
/// backend (pid and start, unique for the cluster's life), in `public.tick_log` of the
/// database `client` is connected to.
pub const LOG_TICKS: &str = "
create table public.tick_log(id bigserial primary key, app text not null, backend text not null, at timestamptz not null default clock_timestamp());
create function public.log_tick() returns trigger language plpgsql as $$
begin
  insert into public.tick_log(app, backend) values (current_setting('application_name'),
    (select pid || '@' || backend_start from pg_stat_activity where pid = pg_backend_pid()));
  return null;
end $$;
create trigger log_tick after insert on pgq.tick for each row execute function public.log_tick();
";

/// The instances (by `application_name`) that made the ticks of `tick_log`, one entry
/// per run of consecutive ticks by the same instance. Exclusive ticking shows one run
/// per leadership; instances ticking at once interleave into many short runs.
pub fn tick_runs(client: &mut postgres::Client) -> Vec<String> {
    let rows = client
        .query("select app from public.tick_log order by id", &[])
        .unwrap();
    let mut runs: Vec<String> = Vec::new();
    for row in rows {
        let app: String = row.get(0);
        if runs.last() != Some(&app) {
            runs.push(app);
        }
    }
    runs
}

/// The number of ticks `app` has made so far.
pub fn ticks_by(client: &mut postgres::Client, app: &str) -> i64 {
    client
        .query_one(
            "select count(*) from public.tick_log where app = $1",
            &[&app],
        )
        .unwrap()
        .get(0)
}

/// One sample: how many instances (distinct `application_name`s) have a backend in
/// `db` whose latest query, started within `recent`, was the ticker call. A follower's
/// latest query is its lock attempt, a replaced leader connection's its unlock.
pub fn ticking_now(
    client: &mut postgres::Client,
    db: &str,
    recent: Duration,
) -> Result<i64, postgres::Error> {
    let recent = format!("{} ms", recent.as_millis());
    Ok(client
        .query_one(
            "select count(distinct application_name) from pg_stat_activity where datname = $1 and query like 'select pgq.ticker()%' and query_start > clock_timestamp() - $2::text::interval",
            &[&db, &recent],
        )?
        .get(0))
}

/// The `application_name` of the session holding `db`'s leader lock, if any.
pub fn lock_holder(client: &mut postgres::Client) -> Result<Option<String>, postgres::Error> {
    Ok(client
        .query_opt(
            "select a.application_name from pg_locks l join pg_database d on d.oid = l.database join pg_namespace n on n.oid = l.objid join pg_stat_activity a on a.pid = l.pid where d.datname = current_catalog and n.nspname = 'pgq' and l.locktype = 'advisory' and l.classid = d.oid and l.objsubid = 2 and l.granted",
            &[],
        )?
        .map(|row| row.get(0)))
}
