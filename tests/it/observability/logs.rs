//! Log lines that keep saying why without flooding: an outage's first line, its
//! reminder at most once a minute and its end; identical errors logged at most once a
//! minute while the metrics count every one.

use std::fs;
use std::time::Duration;

use crate::engine::{check, eager_queue, lines_with, pgq_db, serving, wait_for};
use crate::harness::{Cluster, Daemon};

use super::{Exposition, free_port, get, listen_on, metrics, request, wait_long};

/// The sum of `pgqd_errors_total` for `db` over the series with the given label
/// values; 0 while the listener does not answer yet.
fn errors(port: u16, db: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(page) = request(port, "GET", "/metrics").and_then(|r| Exposition::parse(&r.body).ok())
    else {
        return 0.0;
    };
    page.named("pgqd_errors_total")
        .filter(|s| s.labels.get("datname").map(String::as_str) == Some(db))
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// A maintenance function that raises in every round (maint_period = 0.5) is logged
/// once ("maintenance operation failed"), not again within the minute, while
/// `pgqd_errors_total{task="maint",sqlstate="P0001"}` and the failed operations keep
/// growing.
#[test]
fn repeated_maintenance_failure_is_logged_once() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "repeat");
    eager_queue(cluster, &db, "q");
    cluster.exec(
        &db,
        "create function public.boom(q text) returns int language plpgsql as
           $$ begin raise exception 'boom went off'; end $$;
         update pgq.queue set queue_extra_maint = array['boom'] where queue_name = 'q';",
    );
    let port = free_port();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db],
        &["maint_period = 0.5", &listen_on(port)],
    ));
    wait_for(&daemon, "five failed maintenance calls counted", || {
        errors(port, &db, &[("task", "maint"), ("sqlstate", "P0001")]) >= 5.0
    });
    let page = metrics(port);
    let operations = page.value(
        "pgqd_maint_operations_total",
        &[("datname", &db), ("result", "error")],
    );
    check(
        &daemon,
        operations >= Some(5.0),
        &format!("failed operations counted: {operations:?}"),
    );
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &["maintenance operation failed", "boom went off"]) == 1,
        "the identical failure is logged once a minute",
    );
}

/// Prepends `line` to the cluster's pg_hba.conf and reloads the server.
fn hba_first(cluster: &Cluster, line: &str) {
    let path = cluster.data().join("pg_hba.conf");
    let rest = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{line}\n{rest}")).unwrap();
    cluster.exec("postgres", "select pg_reload_conf()");
}

/// With a wrong password (check_period = 1, so the daemon tries every second), the
/// refusal is logged once, as "cannot connect" with SQLSTATE 28P01, while
/// `pgqd_errors_total{sqlstate="28P01"}` counts every attempt; no line shows the
/// password.
#[test]
fn wrong_password_is_logged_once() {
    let cluster = Cluster::start();
    let db = cluster.create_pgq_db("auth");
    cluster.exec(
        "postgres",
        "create role app login password 'right-secret-pw'",
    );
    hba_first(&cluster, "local all app scram-sha-256");
    let port = free_port();
    let ini = format!(
        "base_connstr = host={} port={} user=app password=wrong-secret-pw\ndatabase_list = {db}\ncheck_period = 1\n{}",
        cluster.dir.display(),
        cluster.port,
        listen_on(port)
    );
    let daemon = Daemon::start(&ini);
    wait_for(&daemon, "four refusals counted", || {
        errors(port, &db, &[("sqlstate", "28P01")]) >= 4.0
    });
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &["cannot connect", "28P01"]) == 1,
        "the refusal is logged once, not at every attempt",
    );
    check(
        &daemon,
        !output.contains("secret-pw"),
        "no password in the log",
    );
    // /status shows the refusal, and nothing of the connection string.
    let status = get(port, "/status").body;
    let last =
        serde_json::from_str::<serde_json::Value>(&status).unwrap()["databases"][&db]["last_error"]
            ["sqlstate"]
            .clone();
    check(
        &daemon,
        last == "28P01",
        &format!("/status shows the refusal: {status}"),
    );
    for leaked in ["secret-pw", "password=", "user=app", "base_connstr"] {
        check(
            &daemon,
            !status.contains(leaked),
            &format!("{leaked} in /status: {status}"),
        );
    }
}

/// The server is down when the daemon starts: "cannot connect" (never "connection
/// lost") once, although connecting fails again and again; after a minute one
/// "still failing for 1m" reminder; when the server starts, "connection restored
/// after N s" with N counted from the first failure, and one outage counted.
#[test]
fn server_down_at_start_reminds_once_a_minute() {
    let cluster = Cluster::start();
    let db = cluster.create_pgq_db("down");
    cluster.stop_server();
    let port = free_port();
    let daemon = Daemon::start(&serving(&cluster, &[&db], &[&listen_on(port)]));
    wait_for(&daemon, "three failed connection attempts", || {
        errors(port, &db, &[]) >= 3.0
    });
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &["cannot connect"]) == 1 && !output.contains("connection lost"),
        "one 'cannot connect' line for the whole outage",
    );
    wait_long(
        &daemon,
        "the reminder after a minute",
        Duration::from_secs(100),
        || daemon.output().contains("still failing for 1m"),
    );
    cluster.start_server();
    daemon.wait_for_log("connection restored after");
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &["cannot connect"]) == 1
            && lines_with(&output, &["still failing for"]) == 1,
        "one first line and one reminder",
    );
    let restored = output
        .lines()
        .find_map(|l| l.split("connection restored after ").nth(1))
        .and_then(|rest| rest.split(' ').next()?.parse::<f64>().ok());
    check(
        &daemon,
        restored.is_some_and(|secs| secs >= 60.0),
        &format!("the outage is counted from its first failure: {restored:?}"),
    );
    let outages = metrics(port).value("pgqd_outages_total", &[("datname", &db)]);
    check(
        &daemon,
        outages == Some(1.0),
        &format!("outages: {outages:?}"),
    );
}
