//! `pgqd --status` (connects itself and flags what needs a person) and
//! `pgqd --healthcheck` (asks the running daemon's `/healthz`).

use std::process::Output;

use crate::engine::{check, eager_queue, pgq_db, serving, wait_for};
use crate::harness::{Cluster, Daemon, free_port, pgqd, wait_until};

/// Runs `pgqd SWITCH` on the daemon's own config file.
fn ask(daemon: &Daemon, switch: &str) -> Output {
    pgqd()
        .arg(switch)
        .arg(daemon.config_path())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// With the daemon ticking, `--status` lists the database as a primary with its pgq
/// version, its queue and consumer, flags nothing and exits 0; `--json` prints the
/// same as JSON.
#[test]
fn status_of_a_healthy_database() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "status_ok");
    eager_queue(cluster, &db, "q");
    cluster.exec(&db, "select pgq.register_consumer('q', 'reader')");
    let daemon = Daemon::start(&serving(cluster, &[&db], &["ticker_period = 0.2"]));
    let mut last = String::new();
    wait_for(&daemon, "a healthy --status", || {
        let output = ask(&daemon, "--status");
        last = text(&output);
        output.status.success()
    });
    for needle in [
        format!("{db}: primary, pgq "),
        "  queue q: ticker lag".into(),
        "    consumer reader: lag".into(),
    ] {
        check(
            &daemon,
            last.contains(&needle),
            &format!("{needle:?} in:\n{last}"),
        );
    }
    let json: serde_json::Value = serde_json::from_slice(
        &pgqd()
            .args(["--status", "--json"])
            .arg(daemon.config_path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["name"], db.as_str());
    assert_eq!(json[0]["queues"][0]["name"], "q");
    assert_eq!(json[0]["consumers"][0]["name"], "reader");
}

/// Without a ticker, a queue whose idle period is 1 s is flagged STALLED once its
/// last tick is older than 1.5 idle periods, and `--status` exits 1.
#[test]
fn status_flags_a_stalled_queue() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "status_stalled");
    cluster.exec(
        &db,
        "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_idle_period', '1 second')",
    );
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("pgqd.ini");
    std::fs::write(&ini, crate::harness::ini(&serving(cluster, &[&db], &[]))).unwrap();
    let mut last = String::new();
    wait_until("a STALLED flag", || {
        let output = pgqd().arg("--status").arg(&ini).output().unwrap();
        last = text(&output);
        output.status.code() == Some(1) && last.contains("STALLED")
    });
    assert!(last.contains("  queue q: "), "{last}");
}

/// A consumer that never finishes a batch blocks rotation: with a rotation period of
/// 1 s and maintenance every 0.5 s, `--status` flags ROTATION BLOCKED naming it.
#[test]
fn status_names_the_consumer_blocking_rotation() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "status_rot");
    eager_queue(cluster, &db, "q");
    cluster.exec(
        &db,
        "select pgq.set_queue_config('q', 'rotation_period', '1 second');
         select pgq.register_consumer('q', 'sleepy');",
    );
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &["ticker_period = 0.2", "maint_period = 0.5"],
    ));
    let mut last = String::new();
    wait_for(&daemon, "a ROTATION BLOCKED flag", || {
        let output = ask(&daemon, "--status");
        last = text(&output);
        output.status.code() == Some(1) && last.contains("ROTATION BLOCKED by consumer sleepy")
    });
}

/// `--healthcheck` exits 0 while the daemon's `/healthz` says every database ticks,
/// and 1 (naming the answer) once ticking has stopped for longer than the default
/// age limit (the server is stopped).
#[test]
fn healthcheck_follows_ticking() {
    let cluster = Cluster::start();
    let db = pgq_db(&cluster, "hc");
    eager_queue(&cluster, &db, "q");
    let port = free_port();
    let daemon = Daemon::start(&serving(
        &cluster,
        &[&db],
        &[
            "ticker_period = 0.2",
            &format!("http_listen = 127.0.0.1:{port}"),
        ],
    ));
    wait_for(&daemon, "a passing health check", || {
        ask(&daemon, "--healthcheck").status.success()
    });
    cluster.stop_server();
    let mut last = String::new();
    wait_for(&daemon, "a failing health check", || {
        let output = ask(&daemon, "--healthcheck");
        last = text(&output);
        output.status.code() == Some(1)
    });
    check(
        &daemon,
        last.contains("503"),
        &format!("the answer named: {last}"),
    );
    cluster.start_server();
    wait_for(&daemon, "a passing health check again", || {
        ask(&daemon, "--healthcheck").status.success()
    });
}
