//! pgqd on a real Patroni cluster: a sidecar next to each node and one instance that
//! follows the primary through a multi-host `base_connstr`, under a producer and a
//! consumer, through a switchover, a killed postmaster, a killed leading pgqd and the
//! old primary back as a replica and promoted again.

mod cluster;
mod load;

use std::time::{Duration, Instant};

use crate::engine::lines_with;
use crate::harness::Daemon;

use super::{LOG_TICKS, lock_holder, tick_runs};
use cluster::{Patroni, connect, streams_to, writable};
use load::{CONSUMER, Load, QUEUE};

const DB: &str = "ha";
/// Reads the tick log (there once the whole set-up has replicated).
const LOGGED_TICKS: &str = "select count(*) from public.tick_log";
/// Ticker period of the instances; a sample counts a ticker call as recent for two.
const PERIOD: Duration = Duration::from_millis(200);
/// Leadership changes the faults may cause: one each (the killed postmaster's
/// restart may also leave the same instance leading).
const FAULTS: usize = 4;

/// Patroni fails over under a producer and a consumer, with pgqd next to each node
/// and one on a multi-host base_connstr: after a switchover, a SIGKILLed postmaster
/// (restarted in place), a SIGKILLed leading pgqd and a switchover back to the
/// rejoined old primary, ticking resumes on the primary each time; no sample sees two
/// instances ticking or two lock holders, and the ticks form one run per leadership;
/// every committed event reaches the consumer; the demoted node's sidecar idles with
/// one line; error lines stay few. The takeover times are printed.
#[test]
fn patroni_failovers_keep_one_ticker_and_every_event() {
    let patroni = Patroni::start();
    let ports = [patroni.node("n1").port, patroni.node("n2").port];
    prepare(ports[0]);
    patroni.wait("the database replicated to n2", || {
        connect(ports[1], DB).is_ok_and(|mut c| c.query_one(LOGGED_TICKS, &[]).is_ok())
    });
    let mut daemons: Vec<Instance> = Instance::all(ports);
    let start = server_now(ports[0]);
    let load = Load::start(ports.to_vec(), DB, PERIOD * 2);
    patroni.wait("ticks and a consumed event", || {
        first_tick_after(ports[0], &start, "").is_some()
            && !load.seen.lock().unwrap().consumed.is_empty()
    });
    let mut report = Vec::new();

    let (after_promotion, end_to_end) = switchover(&patroni, "n1", "n2");
    report.push(format!("switchover n1 -> n2: ticks {after_promotion:.2} s after the promotion was seen, {end_to_end:.2} s after patronictl started"));
    let rejoin = Instant::now();
    patroni.wait("n1 back as a replica of n2", || streams_to(ports[1], "n1"));
    report.push(format!(
        "old primary n1 streaming again {:.1} s after the promotion",
        rejoin.elapsed().as_secs_f64()
    ));

    let (restart, after_ready) = kill_postmaster(&patroni, "n2", ports);
    report.push(format!("postmaster of n2 SIGKILLed: writable again after {restart:.2} s, ticking {after_ready:.2} s after the kill"));
    patroni.wait("n1 streaming from the restarted n2", || {
        streams_to(ports[1], "n1")
    });

    let takeover = kill_leading_pgqd(&mut daemons, ports[1]);
    report.push(format!(
        "leading pgqd SIGKILLed: another ticks after {takeover:.2} s"
    ));

    let n1_standby_lines = daemons[0].lines(&["hot standby"]);
    let n2_standby_lines = daemons[1].lines(&["hot standby"]);
    let (after_promotion, end_to_end) = switchover(&patroni, "n2", "n1");
    report.push(format!("switchover n2 -> n1 (the rejoined old primary): ticks {after_promotion:.2} s after the promotion was seen, {end_to_end:.2} s after patronictl started"));
    patroni.wait("n2 back as a replica of n1", || streams_to(ports[0], "n2"));
    patroni.wait("the demoted n2's sidecar idling", || {
        daemons[1].lines(&["hot standby"]) > n2_standby_lines
    });

    load.stop_producing();
    patroni.wait("every committed event consumed", || load.drained());
    let seen = load.stop();
    let seen = seen.lock().unwrap();
    let runs = tick_runs(&mut connect(ports[0], DB).unwrap());
    report.push(format!(
        "{} samples: at most {} instance(s) ticking and {} lock holder(s) at once; tick runs {runs:?}",
        seen.samples, seen.most_ticking, seen.most_holders
    ));
    report.push(format!(
        "events: {} committed (last {:?}), {} consumed, {} of unknown outcome, {} redelivered",
        seen.committed.len(),
        seen.committed.last(),
        seen.consumed.len(),
        seen.uncertain,
        seen.duplicates
    ));
    let errors: Vec<usize> = daemons.iter().map(|d| d.lines(&["ERROR"])).collect();
    report.push(format!(
        "ERROR lines per instance (n1, n2, multi): {errors:?}"
    ));
    eprintln!("{}", report.join("\n"));

    let fail = |what: &str| {
        for d in &daemons {
            eprintln!("{} output:\n{}", d.app, d.daemon.output());
        }
        patroni.print_logs();
        panic!("{what}");
    };
    if seen.samples < 50 || seen.most_ticking != 1 || seen.most_holders != 1 {
        fail("one instance ticking, and one lock holder, at every sample");
    }
    if runs.len() > 1 + FAULTS {
        fail("one run of ticks per leadership");
    }
    if n1_standby_lines != 1 {
        fail("the demoted n1's sidecar idles with one line until it is promoted again");
    }
    if daemons[1].lines(&["hot standby"]) != n2_standby_lines + 1 {
        fail("the demoted n2's sidecar idles with one line");
    }
    if errors.iter().any(|&e| e > 2 * FAULTS) {
        fail("error lines bounded");
    }
}

/// The database: pgq, an eager queue (every ticker call ticks it), a consumer, and
/// the tick log that names the instance of every tick.
fn prepare(port: u16) {
    connect(port, "postgres")
        .unwrap()
        .batch_execute(&format!("create database {DB}"))
        .unwrap();
    let mut client = connect(port, DB).unwrap();
    client.batch_execute("create extension pgq").unwrap();
    for sql in [
        "select pgq.create_queue($1)",
        "select pgq.set_queue_config($1, 'ticker_max_lag', '0')",
        "select pgq.set_queue_config($1, 'ticker_idle_period', '0')",
    ] {
        client.execute(sql, &[&QUEUE]).unwrap();
    }
    client
        .execute("select pgq.register_consumer($1, $2)", &[&QUEUE, &CONSUMER])
        .unwrap();
    client.batch_execute(LOG_TICKS).unwrap();
}

/// One pgqd and its application_name.
struct Instance {
    app: &'static str,
    ini: String,
    daemon: Daemon,
}

impl Instance {
    /// A sidecar per node (`pgqd_n1`, `pgqd_n2`), then `pgqd_multi` on both nodes
    /// with target_session_attrs=read-write.
    fn all(ports: [u16; 2]) -> Vec<Instance> {
        let [p1, p2] = ports;
        [
            ("pgqd_n1", format!("host=127.0.0.1 port={p1}")),
            ("pgqd_n2", format!("host=127.0.0.1 port={p2}")),
            (
                "pgqd_multi",
                format!(
                    "host=127.0.0.1,127.0.0.1 port={p1},{p2} target_session_attrs=read-write"
                ),
            ),
        ]
        .into_iter()
        .map(|(app, hosts)| {
            let ini = format!(
                "base_connstr = {hosts} user=postgres application_name={app}\ndatabase_list = {DB}\nticker_period = {}\nstats_period = 600\n",
                PERIOD.as_secs_f64()
            );
            let daemon = Daemon::start(&ini);
            Instance { app, ini, daemon }
        })
        .collect()
    }

    fn lines(&self, needles: &[&str]) -> usize {
        lines_with(&self.daemon.output(), needles)
    }
}

/// A switchover, with the promotion watched while patronictl runs: (seconds from the
/// promotion seen to the first tick on the new primary, seconds from patronictl's
/// start to that tick).
fn switchover(patroni: &Patroni, from: &str, to: &str) -> (f64, f64) {
    let port = patroni.node(to).port;
    let started = Instant::now();
    let promoted = std::thread::scope(|s| {
        let command = s.spawn(|| patroni.switchover(from, to));
        patroni.wait(&format!("{to} promoted"), || writable(port));
        let promoted = server_now(port);
        command.join().unwrap();
        promoted
    });
    patroni.wait(&format!("a tick on {to}"), || {
        first_tick_after(port, &promoted, "").is_some()
    });
    let after = first_tick_after(port, &promoted, "").unwrap();
    let seen_at = started.elapsed().as_secs_f64();
    (after, seen_at)
}

/// SIGKILL to the primary's postmaster; Patroni restarts it in place. (Seconds until
/// it accepts writes again, seconds from the kill to the first tick after it.)
fn kill_postmaster(patroni: &Patroni, name: &str, ports: [u16; 2]) -> (f64, f64) {
    let port = patroni.node(name).port;
    let other = if port == ports[0] { ports[1] } else { ports[0] };
    patroni.kill_postmaster(name);
    let killed = Instant::now();
    // The replica shares the clock: ticks after this time are the restarted server's.
    let since = server_now(other);
    patroni.wait(&format!("{name} writable again"), || writable(port));
    let restart = killed.elapsed().as_secs_f64();
    patroni.wait(&format!("a tick on the restarted {name}"), || {
        first_tick_after(port, &since, "").is_some()
    });
    let first = first_tick_after(port, &since, "").unwrap();
    (restart, first)
}

/// SIGKILL to the instance holding the lock on the primary at `port`; another must
/// tick. It is started again afterwards. Seconds from the kill to the other's tick.
fn kill_leading_pgqd(instances: &mut [Instance], port: u16) -> f64 {
    let mut client = connect(port, DB).unwrap();
    crate::harness::wait_until("a leader and a follower on the primary", || {
        pgqd_sessions(&mut client) >= 2
    });
    let holder = lock_holder(&mut client).unwrap().expect("a leader");
    let leader = instances.iter().position(|i| i.app == holder).unwrap();
    let since = server_now(port);
    let _ = instances[leader].daemon.child.kill();
    let _ = instances[leader].daemon.child.wait();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::harness::wait_until("another instance ticking", || {
            first_tick_after(port, &since, &holder).is_some()
        })
    }));
    if let Err(panic) = waited {
        for i in instances.iter() {
            eprintln!("{} output:\n{}", i.app, i.daemon.output());
        }
        std::panic::resume_unwind(panic);
    }
    let took = first_tick_after(port, &since, &holder).unwrap();
    instances[leader].daemon = Daemon::start(&instances[leader].ini);
    took
}

/// Instances (by application_name) with a session in the database.
fn pgqd_sessions(client: &mut postgres::Client) -> i64 {
    client
        .query_one(
            "select count(distinct application_name) from pg_stat_activity where datname = current_catalog and application_name like 'pgqd%'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// The server's clock, as text for [`first_tick_after`].
fn server_now(port: u16) -> String {
    connect(port, "postgres")
        .unwrap()
        .query_one("select clock_timestamp()::text", &[])
        .unwrap()
        .get(0)
}

/// Seconds from `since` (server time) to the first tick logged after it by an
/// instance other than `except`; `None` while there is none (or no connection).
fn first_tick_after(port: u16, since: &str, except: &str) -> Option<f64> {
    let mut client = connect(port, DB).ok()?;
    client
        .query_one(
            "select extract(epoch from min(at) - $1::text::timestamptz)::float8 from public.tick_log where at > $1::text::timestamptz and app <> $2",
            &[&since, &except],
        )
        .ok()?
        .get(0)
}
