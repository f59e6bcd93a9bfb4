//! Two pgqd instances on one cluster and database: the leader lock lets one tick.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::engine::{eager_queue, lines_with, pgq_db};
use crate::harness::{Cluster, Daemon, wait_until};

use super::{LOG_TICKS, lock_holder, tick_runs, ticking_now, ticks_by};

/// Ticker period of these tests; a sample counts a ticker call as recent for two.
const PERIOD: Duration = Duration::from_millis(200);
/// How long the samplers watch a steady state.
const WINDOW: Duration = Duration::from_secs(2);

/// Two instances on one database: only the holder of the leader lock ticks (every
/// tick is its, and no sample sees both running the ticker), the other logs one line
/// naming the holder and nothing at WARNING or ERROR; after kill -9 of the leader the
/// follower takes the lock and ticks, and still only one instance ticks at a time.
#[test]
fn one_of_two_ticks_and_the_other_takes_over_after_kill() {
    let mut pair = Pair::start("pair_kill", &[]);
    let (leader, follower) = pair.roles();
    let mut client = pair.cluster.connect(&pair.db);
    pair.check(
        pair.max_ticking(WINDOW) == 1,
        "one instance ticking at every sample",
    );
    pair.check(
        tick_runs(&mut client) == [leader.app],
        "every tick made by the leader",
    );
    let quiet = pair.daemons[follower.index].output();
    pair.check(
        lines_with(&quiet, &["following:", leader.app]) == 1
            && lines_with(&quiet, &["ERROR"]) + lines_with(&quiet, &["WARNING"]) == 0,
        "the follower logs one line naming the leader, no warnings or errors",
    );

    let killed = Instant::now();
    let _ = pair.daemons[leader.index].child.kill();
    let _ = pair.daemons[leader.index].child.wait();
    pair.wait("the follower's first tick", || {
        ticks_by(&mut client, follower.app) > 0
    });
    eprintln!(
        "takeover after kill -9 of the leading pgqd: {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    pair.check(
        pair.max_ticking(Duration::from_secs(1)) == 1,
        "one instance ticking after the takeover",
    );
    pair.check(
        tick_runs(&mut client) == [leader.app, follower.app],
        "the leader's ticks, then the follower's",
    );
    pair.check(
        lines_with(
            &pair.daemons[follower.index].output(),
            &["took over the leader lock"],
        ) == 1,
        "the takeover logged once",
    );
}

/// A leader that stops answering (SIGSTOP: its connection stays open and idle, as
/// in a network partition) loses the lock when its session's idle_session_timeout
/// (10 s) ends it, and the follower ticks; resumed, the old leader finds its session
/// gone and follows, so the ticks stay one instance's at a time.
#[test]
fn a_stopped_leader_loses_the_lock_to_the_idle_session_timeout() {
    let pair = Pair::start("pair_stop", &[]);
    let (leader, follower) = pair.roles();
    let mut client = pair.cluster.connect(&pair.db);
    wait_until("the leader's first tick", || {
        ticks_by(&mut client, leader.app) > 0
    });

    pair.daemons[leader.index].signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    pair.wait("the follower's first tick", || {
        ticks_by(&mut client, follower.app) > 0
    });
    eprintln!(
        "takeover from a stopped (partitioned) leader: {:.2} s",
        stopped.elapsed().as_secs_f64()
    );
    // Only what the old leader writes once resumed counts.
    let resumed = pair.daemons[leader.index].output().len();
    pair.daemons[leader.index].signal(Signal::SIGCONT);
    pair.wait("the old leader following", || {
        pair.daemons[leader.index].output()[resumed..].contains("following:")
    });
    pair.check(
        pair.max_ticking(Duration::from_secs(1)) == 1,
        "one instance ticking after the old leader resumed",
    );
    pair.check(
        tick_runs(&mut client) == [leader.app, follower.app],
        "the leader's ticks, then the follower's",
    );
}

/// connection_lifetime = 1 on both instances: every renewal releases the lock on the
/// old session and claims it on the new one, handing it over only to an instance that
/// tries it just then; through many renewals (ticks from at least 3 backends in 4 s)
/// no sample sees both ticking, and ticking goes on.
#[test]
fn connection_renewal_never_makes_two_leaders() {
    let pair = Pair::start("pair_renew", &["connection_lifetime = 1"]);
    let _ = pair.roles();
    let mut client = pair.cluster.connect(&pair.db);
    let last = |client: &mut postgres::Client| -> i64 {
        let row = client.query_one("select coalesce(max(id), 0) from public.tick_log", &[]);
        row.unwrap().get(0)
    };
    let before = last(&mut client);
    pair.check(
        pair.max_ticking(Duration::from_secs(4)) == 1,
        "one instance ticking at every sample through the renewals",
    );
    let after = last(&mut client);
    pair.check(after > before + 5, "ticking went on");
    let backends: i64 = (client.query_one(
        "select count(distinct backend) from public.tick_log where id > $1 and id <= $2",
        &[&before, &after],
    ))
    .unwrap()
    .get(0);
    pair.check(
        backends >= 3,
        &format!("ticks from {backends} backends in 4 s of connection_lifetime = 1 (at least 3)"),
    );
    let runs = tick_runs(&mut client);
    eprintln!(
        "leadership runs through 4 s of renewals every second: {} runs, {backends} backends",
        runs.len()
    );
}

/// With leader_lock = 0 both instances tick, as pgqd 3.5 does: a sample sees both
/// running the ticker and their ticks interleave. (The samplers above can fail.)
#[test]
fn without_the_leader_lock_both_tick() {
    let pair = Pair::start("pair_off", &["leader_lock = 0"]);
    let mut client = pair.cluster.connect(&pair.db);
    pair.wait("ticks by both instances", || {
        ticks_by(&mut client, "pgqd_a") > 0 && ticks_by(&mut client, "pgqd_b") > 0
    });
    pair.check(pair.max_ticking(WINDOW) == 2, "both instances seen ticking");
    pair.check(tick_runs(&mut client).len() > 2, "interleaved ticks");
}

/// An instance's place in [`Pair::daemons`] and its `application_name`.
#[derive(Clone, Copy)]
struct Role {
    index: usize,
    app: &'static str,
}

/// Two daemons, `pgqd_a` and `pgqd_b` by application_name, serving one database
/// whose ticks are logged.
struct Pair {
    cluster: &'static Cluster,
    db: String,
    daemons: [Daemon; 2],
}

const APPS: [&str; 2] = ["pgqd_a", "pgqd_b"];

impl Pair {
    fn start(prefix: &str, extra: &[&str]) -> Pair {
        let cluster = Cluster::shared();
        let db = pgq_db(cluster, prefix);
        eager_queue(cluster, &db, "q");
        cluster.exec(&db, LOG_TICKS);
        let daemons = APPS.map(|app| {
            let mut ini = format!(
                "base_connstr = {} application_name={app}\ndatabase_list = {db}\nticker_period = {}\n",
                cluster.connstr(),
                PERIOD.as_secs_f64()
            );
            for line in extra {
                ini.push_str(line);
                ini.push('\n');
            }
            Daemon::start(&ini)
        });
        Pair {
            cluster,
            db,
            daemons,
        }
    }

    /// (leader, follower), once one holds the lock and the other follows.
    fn roles(&self) -> (Role, Role) {
        let mut client = self.cluster.connect(&self.db);
        self.wait("a leader and a follower", || {
            lock_holder(&mut client).unwrap().is_some()
                && self
                    .daemons
                    .iter()
                    .any(|d| d.output().contains("following:"))
        });
        let holder = lock_holder(&mut client).unwrap().unwrap();
        let index = APPS.iter().position(|a| *a == holder).unwrap();
        let role = |index: usize| Role {
            index,
            app: APPS[index],
        };
        (role(index), role(1 - index))
    }

    /// The most instances seen ticking at one sample, sampling every 50 ms for `window`.
    fn max_ticking(&self, window: Duration) -> i64 {
        let mut observer = self.cluster.connect("postgres");
        let start = Instant::now();
        let mut most = 0;
        while start.elapsed() < window {
            most = most.max(ticking_now(&mut observer, &self.db, PERIOD * 2).unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        most
    }

    /// `wait_until`, printing both daemons' output when the deadline passes.
    fn wait(&self, what: &str, condition: impl FnMut() -> bool) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| wait_until(what, condition))) {
            self.print_outputs();
            resume_unwind(panic);
        }
    }

    fn check(&self, condition: bool, what: &str) {
        if !condition {
            self.print_outputs();
            panic!("{what}");
        }
    }

    fn print_outputs(&self) {
        for (daemon, app) in self.daemons.iter().zip(APPS) {
            eprintln!("{app} output:\n{}", daemon.output());
        }
    }
}
