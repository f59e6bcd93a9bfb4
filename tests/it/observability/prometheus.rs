//! The alert rules and the dashboard shipped with pgqd: promtool's checks and unit
//! tests, the metric names they use, and a real Prometheus server scraping a running
//! daemon over TLS with basic auth (`http_web_config`) and firing `PgqdTickerStalled`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine::{all_ticks, eager_queue, pgq_db, serving, wait_for};
use crate::harness::{Cluster, Daemon};

use super::endpoints::FAMILIES;
use super::pki::{Ca, PASSWORD, USER, password_hash};
use super::{free_port, listen_on, request, wait_long};

/// Where the rules and their unit tests live in the repository.
fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus")
}

/// `program` with `args`, or a panic saying how to install it.
fn tool(program: &str) -> Command {
    crate::harness::require_tool(program, "--version", "prometheus");
    Command::new(program)
}

fn run_promtool(args: &[&str]) {
    let out = tool("promtool")
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `promtool check rules` accepts the rules file, and `promtool test rules` passes
/// its unit tests: each alert firing on its own case and quiet on the others.
#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    run_promtool(&["check", "rules", "pgqd.rules.yml"]);
    run_promtool(&["test", "rules", "pgqd.rules.test.yml"]);
}

/// The metric names in `text`: words starting with `pgq_` or `pgqd_`, a counter's
/// `_total` and a histogram's `_bucket`, `_sum` and `_count` taken off.
fn metric_names(text: &str) -> Vec<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.split(|c: char| !word(c))
        .filter(|w| w.starts_with("pgq_") || w.starts_with("pgqd_"))
        .map(|w| {
            ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

/// Every metric the rules and the dashboard's queries name is one pgqd serves,
/// and the dashboard is valid JSON with a panel per figure.
#[test]
fn rules_and_dashboard_use_served_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = fs::read_to_string(prometheus_dir().join("pgqd.rules.yml")).unwrap();
    let dashboard = fs::read_to_string(root.join("docs/grafana/pgqd-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let panels = parsed["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let rule_exprs: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for name in metric_names(&rule_exprs)
        .into_iter()
        .chain(exprs.iter().flat_map(|e| metric_names(e)))
    {
        assert!(
            FAMILIES.contains(&name.as_str()),
            "{name} is not a metric pgqd serves"
        );
    }
}

/// A Prometheus server of the test's own, killed (and its data removed) on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping pgqd at `target` every second over HTTPS, trusting
    /// `ca` and sending the test user's credentials (from a file, as operators do),
    /// and evaluating the shipped rules every second.
    fn start(target: u16, ca: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        let rules = prometheus_dir().join("pgqd.rules.yml");
        let password = dir.path().join("pgqd.pass");
        fs::write(&password, PASSWORD).unwrap();
        let lines = [
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}".into(),
            format!("rule_files: ['{}']", rules.display()),
            "scrape_configs:".into(),
            "  - job_name: pgqd".into(),
            "    scheme: https".into(),
            format!(
                "    tls_config: {{ca_file: '{}', server_name: localhost}}",
                ca.display()
            ),
            format!(
                "    basic_auth: {{username: {USER}, password_file: '{}'}}",
                password.display()
            ),
            format!("    static_configs: [{{targets: ['127.0.0.1:{target}']}}]"),
        ];
        fs::write(&config, lines.join("\n") + "\n").unwrap();
        let log = fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = tool("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus { child, port, dir }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on the API, as JSON; `None` while it does not answer.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let response = request(self.port, "GET", path)?;
        (response.status == 200)
            .then(|| serde_json::from_str(&response.body).ok())
            .flatten()
    }

    /// The state (`pending`, `firing`) of each active `alertname` alert, by datname.
    /// Panics when the API does not answer with 200 and a list of alerts: a dead
    /// Prometheus must not pass for one without alerts.
    fn alerts(&self, alertname: &str) -> Vec<(String, String)> {
        let path = "/api/v1/alerts";
        let response = request(self.port, "GET", path)
            .unwrap_or_else(|| panic!("no answer to GET {path}; log:\n{}", self.log()));
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        let body: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", response.body));
        let alerts = body["data"]["alerts"].as_array();
        let alerts = alerts.unwrap_or_else(|| panic!("GET {path}: no alerts list: {body}"));
        alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == alertname)
            .map(|a| {
                let label = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                (label(&a["labels"]["datname"]), label(&a["state"]))
            })
            .collect()
    }

    /// Whether the pgqd target's last scrape, over HTTPS, succeeded.
    fn target_up(&self) -> bool {
        self.api("/api/v1/targets").is_some_and(|body| {
            body["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["labels"]["job"] == "pgqd"
                        && t["health"] == "up"
                        && t["scrapeUrl"]
                            .as_str()
                            .is_some_and(|u| u.starts_with("https://"))
                })
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus scrapes the daemon every second with the shipped rules, over
/// TLS with basic auth (the listener refuses anything else): while
/// a transaction holds `lock table pgq.queue in access exclusive mode` in one
/// database, `PgqdTickerStalled` fires for that database, and not for the other,
/// ticking all along (over a minute by then, past the rule's 30 s and its `for`);
/// once the lock is released, it resolves.
#[test]
fn prometheus_fires_and_resolves_ticker_stalled() {
    let cluster = Cluster::shared();
    let (locked, free) = (pgq_db(cluster, "prom_locked"), pgq_db(cluster, "prom_free"));
    eager_queue(cluster, &locked, "q");
    eager_queue(cluster, &free, "q");
    let port = free_port();
    let tls = tempfile::tempdir().unwrap();
    let ca = Ca::new(tls.path(), "ca");
    let (cert, key) = ca.issue(tls.path(), "pgqd", true);
    let web = tls.path().join("web.yml");
    fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {USER}: {}\n",
            cert.display(),
            key.display(),
            password_hash()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&locked, &free],
        &[
            "ticker_period = 0.5",
            "ticker_timeout = 1",
            &listen_on(port),
            &format!("http_web_config = {}", web.display()),
        ],
    ));
    let prometheus = Prometheus::start(port, &ca.cert);
    let with_log = |what: &str| format!("{what}; prometheus log:\n{}", prometheus.log());
    wait_for(&daemon, &with_log("both ticking and scraped"), || {
        all_ticks(cluster, &locked) > 0 && all_ticks(cluster, &free) > 0 && prometheus.target_up()
    });
    assert_eq!(
        prometheus.alerts("PgqdTickerStalled"),
        vec![],
        "no alert while ticking"
    );

    let mut holder = cluster.connect(&locked);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("lock table pgq.queue in access exclusive mode")
        .unwrap();
    let since = Instant::now();
    let firing = (locked.clone(), "firing".to_string());
    // The rule's 30 s without a tick plus its `for: 30s`, and the scheduler's slack.
    wait_long(
        &daemon,
        &with_log("PgqdTickerStalled firing"),
        Duration::from_secs(120),
        || {
            let alerts = prometheus.alerts("PgqdTickerStalled");
            assert!(
                alerts.iter().all(|(db, _)| *db == locked),
                "only the locked database alerts: {alerts:?}"
            );
            alerts.contains(&firing)
        },
    );
    assert!(
        since.elapsed() >= Duration::from_secs(55),
        "fired after {:?}, before the rule's minute",
        since.elapsed()
    );
    // The free database has ticked all this minute: no alert, not even pending.
    let alerts = prometheus.alerts("PgqdTickerStalled");
    assert!(
        alerts.iter().all(|(db, _)| *db != free),
        "{free} alerts after a minute of ticking: {alerts:?}"
    );

    lock.commit().unwrap();
    wait_long(
        &daemon,
        &with_log("PgqdTickerStalled resolved"),
        Duration::from_secs(30),
        || prometheus.alerts("PgqdTickerStalled").is_empty(),
    );
}
