//! Real network partitions between two pgqd instances and their server: each instance
//! in a network namespace of its own reaching the server over a veth pair, cut with
//! `iptables -j DROP` inside its namespace (see [`netns`]). Unlike SIGSTOP, a cut-off
//! instance runs on: its packets vanish and the server sees an idle session until a
//! timeout ends it.
//!
//! Throughout every case a producer commits numbered events, a consumer reads every
//! batch, and a sampler looks every 100 ms at the lock holders and the instances
//! ticking; each case ends with: every event delivered exactly once, never two
//! instances ticking or holding the lock at a sample, the ticks one run per leadership.
//! The measured times are printed (`partition ...` lines).
//!
//! The designed bounds: a leader's session ends `idle_session_timeout` after its last
//! statement (max(10 s, 3 ticker periods), set on the leader's session, with
//! `tcp_user_timeout` for answers that go unacknowledged), and a follower tries the
//! lock every second, so a cut-off leader is replaced within that timeout + 1 s. A
//! follower's session has the same limits, so a vanished follower's ends as soon.

mod lab;
mod netns;
mod sampler;

use std::time::{Duration, Instant, SystemTime};

use crate::harness::DEADLINE;
use lab::{A, APPS, B, Lab};
use netns::Cut;

/// The leaders' idle_session_timeout at the lab's ticker period (0.2 s): 10 s.
const IDLE_LIMIT: Duration = Duration::from_secs(10);
/// How often a follower tries the lock.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);
/// Room on top of a designed bound for a loaded machine (the suite runs in parallel).
const SLACK: Duration = Duration::from_secs(3);
/// How long a cut lasts in the cases that hold one.
const OUTAGE: Duration = Duration::from_secs(30);

/// Seconds from `from` to `to`.
fn secs(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}

/// Waits for the follower's first tick after `cut`, within the designed bound, and
/// prints the takeover time.
fn takeover(lab: &mut Lab, cut: SystemTime, what: &str) {
    lab.wait(
        &format!("{} ticking after {what}", APPS[B]),
        IDLE_LIMIT + FOLLOW_RETRY + SLACK,
        |lab| lab.first_tick(Some(APPS[B]), cut).is_some(),
    );
    let first = lab.first_tick(Some(APPS[B]), cut).unwrap();
    let seconds = secs(cut, first);
    eprintln!("partition takeover after {what}: {seconds:.2} s");
}

/// After a heal, the old leader (A) finds its session gone and follows.
fn follows_again(lab: &mut Lab, since: usize) {
    lab.wait("pgqd_a following again", DEADLINE, |lab| {
        lab.output(A)[since..].contains("following:")
    });
}

/// Case 1: the leader cut off (both directions) for 30 s: the follower leads within
/// idle_session_timeout + 1 s; healed, the old leader follows, never having ticked
/// beside the new one.
#[test]
fn a_cut_off_leader_is_replaced_and_follows_on_heal() {
    let mut lab = Lab::start("part_leader");
    let start = Instant::now();
    let cut = lab.cut(A, Cut::Both);
    takeover(&mut lab, cut, "the leader was cut off");
    lab.hold_until(start + OUTAGE);
    let since = lab.output(A).len();
    lab.heal(A);
    follows_again(&mut lab, since);
    lab.finish("leader cut off", Some(&[APPS[A], APPS[B]]));
}

/// Case 2: the follower cut off for 20 s: the leader ticks on without a gap longer than a
/// second; healed, the follower tries the lock again on a new session, and its old
/// session is gone from the server.
#[test]
fn a_cut_off_follower_leaves_ticking_alone() {
    let mut lab = Lab::start("part_follower");
    let start = Instant::now();
    let cut = lab.cut(B, Cut::Both);
    lab.hold_until(start + Duration::from_secs(20));
    let healed = lab.heal(B);
    let gap = lab.longest_gap(Some(APPS[A]), cut, healed);
    eprintln!("partition follower cut off: longest gap between the leader's ticks {gap:.2} s");
    lab.check(gap < 1.0, &format!("the leader's ticks paused {gap:.2} s"));
    lab.wait(
        "pgqd_b trying the lock again, on one session",
        DEADLINE,
        |lab| lab.tries_lock_since(B, healed) && lab.backends(B) == 1,
    );
    lab.finish("follower cut off", Some(&[APPS[A]]));
}

/// Case 3: both cut off: ticking stops and `/healthz` answers 503 on both; healed, one of
/// them leads within 2 s.
#[test]
fn both_cut_off_stop_ticking_and_one_leads_on_heal() {
    let mut lab = Lab::start("part_both");
    let start = Instant::now();
    let cut = lab.cut(A, Cut::Both);
    lab.cut(B, Cut::Both);
    lab.wait("/healthz 503 on both", DEADLINE + IDLE_LIMIT, |lab| {
        lab.healthz(A) == Some(503) && lab.healthz(B) == Some(503)
    });
    eprintln!(
        "partition both cut off: /healthz 503 on both after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let healed = SystemTime::now();
    let stopped = lab.first_tick(None, cut + Duration::from_secs(1));
    lab.check(
        stopped.is_none(),
        &format!("a tick {stopped:?} while both were cut off"),
    );
    lab.heal(A);
    lab.heal(B);
    lab.wait(
        "a tick after the heal",
        Duration::from_secs(2) + SLACK,
        |lab| lab.first_tick(None, healed).is_some(),
    );
    let first = lab.first_tick(None, healed).unwrap();
    eprintln!(
        "partition both cut off: ticking {:.2} s after the heal",
        secs(healed, first)
    );
    lab.wait("a leader and a follower", DEADLINE, |lab| {
        let follower = 1 - lab.leader();
        lab.holder().is_some() && lab.tries_lock_since(follower, healed)
    });
    let runs: &[&str] = match lab.leader() {
        A => &[APPS[A]],
        _ => &[APPS[A], APPS[B]],
    };
    lab.finish("both cut off", Some(runs));
}

/// Case 4: the leader's link flapping for a minute, down 2 s of every 5. Each outage
/// is far shorter than idle_session_timeout, but TCP's retransmission backoff doubles
/// through the outages (from the RTO, 0.2 s and more on a loaded machine) and can keep a
/// stalled call from getting through the 3 s windows for 10 s: the server then ends the
/// leader's session, and the follower takes over (or the leader takes the lock again).
/// Either way: never two instances ticking, every event once, and ticking resumes
/// within idle_session_timeout + 1 s of any stall.
#[test]
fn a_flapping_leader_link_keeps_one_ticker() {
    let mut lab = Lab::start("part_flap");
    let start = Instant::now();
    let began = SystemTime::now();
    for round in 0..12 {
        lab.hold_until(start + Duration::from_secs(5 * round));
        lab.cut(A, Cut::Both);
        lab.hold_until(start + Duration::from_secs(5 * round + 2));
        lab.heal(A);
    }
    lab.hold_until(start + Duration::from_secs(60));
    let gap = lab.longest_gap(None, began, SystemTime::now());
    eprintln!("partition flapping link: longest gap between ticks {gap:.2} s");
    let bound = IDLE_LIMIT + FOLLOW_RETRY + SLACK;
    lab.check(
        gap < bound.as_secs_f64(),
        &format!("ticking paused {gap:.2} s (more than {bound:?})"),
    );
    lab.finish("flapping link", None);
}

/// Case 5: half-open: only the server's packets to the leader are dropped (its calls
/// arrive, the answers vanish). The follower leads within idle_session_timeout + 1 s
/// (the server's `tcp_user_timeout` fails the unacknowledged answers); healed, the old
/// leader follows.
#[test]
fn a_half_open_leader_is_replaced_and_follows_on_heal() {
    let mut lab = Lab::start("part_half");
    let start = Instant::now();
    let cut = lab.cut(A, Cut::FromServer);
    takeover(
        &mut lab,
        cut,
        "the server's packets to the leader were dropped",
    );
    lab.hold_until(start + Duration::from_secs(20));
    let since = lab.output(A).len();
    lab.heal(A);
    follows_again(&mut lab, since);
    lab.finish("half-open", Some(&[APPS[A], APPS[B]]));
}

/// Case 6: a follower that vanishes behind a cut (its link cut, then the process
/// killed, so no goodbye reaches the server) leaves no session behind: its session has
/// the limits a leader's has, and the server ends it within idle_session_timeout of
/// its last lock try (without them it would stay until the server's TCP keepalives,
/// two hours by default). The leader ticks on throughout.
#[test]
fn a_vanished_follower_leaves_no_session() {
    let mut lab = Lab::start("part_gone");
    let cut = lab.cut(B, Cut::Both);
    lab.kill(B);
    lab.wait(
        "the vanished follower's session ended by the server",
        IDLE_LIMIT + FOLLOW_RETRY + SLACK,
        |lab| lab.backends(B) == 0,
    );
    eprintln!(
        "partition vanished follower: its session ended {:.2} s after the cut",
        secs(cut, SystemTime::now())
    );
    let gap = lab.longest_gap(Some(APPS[A]), cut, SystemTime::now());
    lab.check(gap < 1.0, &format!("the leader's ticks paused {gap:.2} s"));
    lab.finish("vanished follower", Some(&[APPS[A]]));
}
