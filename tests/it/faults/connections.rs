//! Faults of the daemon's connections: killed, refused, out of slots, out of rights.

use std::time::{Duration, Instant};

use crate::engine::check;
use crate::harness::{Cluster, unique};

use super::{Bounds, FAULT, Rig};

/// The rig's check_period, in seconds (see `faults/mod.rs`).
const CHECK_PERIOD: f64 = 5.0;

/// The daemon's backends terminated (`pg_terminate_backend`) three times, a second
/// apart, in all its databases: it reconnects at once each time.
#[test]
fn backends_terminated() {
    let cluster = Cluster::shared();
    let mut rig = Rig::start(cluster, 3, &[]);
    rig.begin("backends terminated 3x", &rig.all());
    for round in 0..3 {
        let all = rig.all();
        rig.wait("the daemon connected to every database", |rig| {
            all.iter().all(|&i| rig.pgqd_backends(&[i]) >= 1)
        });
        let terminated = rig.terminate_pgqd(&all);
        check(
            &rig.daemon,
            terminated >= 3,
            &format!("round {round}: {terminated} terminated"),
        );
        std::thread::sleep(Duration::from_secs(1)); // the pace of the terminations
    }
    rig.end();
    rig.finish(Bounds::DEFAULT);
}

/// `alter database ... allow_connections false` and the daemon's backend there
/// terminated: the other databases keep ticking; the refused one gets no tick, is
/// tried again at check_period, not in a loop, and ticks again once connections are
/// allowed.
#[test]
fn connections_disallowed() {
    let cluster = Cluster::shared();
    let mut rig = Rig::start(cluster, 3, &[]);
    let db = crate::engine::ident(&rig.dbs[0]);
    rig.begin("connections disallowed", &[0]);
    cluster.exec(
        "postgres",
        &format!("alter database {db} allow_connections false"),
    );
    let terminated = rig.terminate_pgqd(&[0]);
    check(
        &rig.daemon,
        terminated >= 1,
        "no backend of pgqd was terminated",
    );
    let closed = rig.now();
    rig.hold(FAULT);
    let ticks = rig.ticks_since(0, closed);
    check(
        &rig.daemon,
        ticks == 0,
        &format!("{ticks} ticks while closed"),
    );
    cluster.exec(
        "postgres",
        &format!("alter database {db} allow_connections true"),
    );
    rig.end();
    // The first refusal is an ERROR line, the ones after it DEBUG lines (under -v).
    let attempts =
        rig.lines_about(0, &["cannot connect"]) + rig.lines_about(0, &["still unreachable"]);
    let bound = (FAULT.as_secs_f64() / CHECK_PERIOD).floor() as usize + 2;
    let what = format!("{attempts} connection attempts in {FAULT:?} (at most {bound})");
    check(&rig.daemon, (1..=bound).contains(&attempts), &what);
    rig.finish(Bounds::REFUSAL);
}

/// The daemon runs as a member of pgq_admin, not a superuser; pgq_admin revoked from
/// it for a while, then granted back: no database ticks meanwhile; each is tried
/// again every check_period, and a try that connects but is refused again is the same
/// outage: one ERROR line per database, then (after the grant) one line saying the
/// ticker works again, and ticking resumes within check_period of the grant.
#[test]
fn pgq_admin_revoked() {
    let cluster = Cluster::shared();
    let role = unique("ticker");
    cluster.exec(
        "postgres",
        &format!("create role {role} login in role pgq_admin"),
    );
    let mut rig = Rig::start_as(cluster, 3, &role, &[]);
    rig.begin("pgq_admin revoked", &rig.all());
    cluster.exec("postgres", &format!("revoke pgq_admin from {role}"));
    // The ticker call running at the revoke may still end well.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let revoked = rig.now();
    rig.hold(FAULT);
    for i in rig.all() {
        let ticks = rig.ticks_since(i, revoked);
        let what = format!("{ticks} ticks in {} without pgq_admin", rig.dbs[i]);
        check(&rig.daemon, ticks == 0, &what);
    }
    cluster.exec("postgres", &format!("grant pgq_admin to {role}"));
    rig.end();
    for i in rig.all() {
        let outages = rig.lines_about(i, &[" ERROR ", "refused"]);
        let what = format!("{outages} outage lines for {}", rig.dbs[i]);
        check(&rig.daemon, outages == 1, &what);
    }
    let all = rig.all();
    rig.wait("a 'ticker works again' line for every database", |rig| {
        all.iter()
            .all(|&i| rig.lines_about(i, &["ticker works again after"]) == 1)
    });
    for i in rig.all() {
        let restored = rig.lines_about(i, &["connection restored"]);
        let what = format!("{restored} 'connection restored' lines for {}", rig.dbs[i]);
        check(&rig.daemon, restored == 0, &what);
    }
    rig.finish(Bounds::REFUSAL);
}

/// max_connections = 20 filled with idle sessions, and the daemon's backend in one
/// database terminated so that it must reconnect into the full server: the other
/// databases keep ticking on their kept connections; once sessions are freed, the
/// starved one ticks again.
#[test]
fn max_connections_exhausted() {
    let cluster = Cluster::start_with(&["max_connections = 20"]);
    let mut rig = Rig::start(&cluster, 3, &[]);
    rig.begin("max_connections exhausted", &[0]);
    let mut fillers = fill(&cluster);
    // The terminated backend's slot goes to a filler, not back to the daemon.
    let mut starved = false;
    for _ in 0..5 {
        rig.terminate_pgqd(&[0]);
        fillers.extend(fill(&cluster));
        if rig.pgqd_backends(&[0]) == 0 {
            starved = true;
            break;
        }
    }
    check(
        &rig.daemon,
        starved,
        "the daemon kept a slot in the full server",
    );
    rig.hold(FAULT);
    drop(fillers);
    rig.end();
    rig.finish(Bounds::DEFAULT);
}

/// Idle sessions until the server refuses one; for two seconds a freed slot is taken
/// again at once.
fn fill(cluster: &Cluster) -> Vec<postgres::Client> {
    let mut sessions = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        match filler(cluster) {
            Ok(client) => sessions.push(client),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    sessions
}

fn filler(cluster: &Cluster) -> Result<postgres::Client, postgres::Error> {
    postgres::Config::new()
        .host_path(&cluster.dir)
        .port(cluster.port)
        .user("postgres")
        .dbname("postgres")
        .application_name(super::traffic::APP)
        .connect(postgres::NoTls)
}
