//! The listener behind `http_web_config` (exporter-toolkit's web configuration):
//! TLS only, basic auth checked against bcrypt hashes, client certificates required
//! and checked, certificates rotated without a restart, `--check` and
//! `--healthcheck` with it, and never a secret in what pgqd prints.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::engine::{pgq_db, serving};
use crate::harness::{Cluster, Daemon, pgqd, poll};

use super::pki::{Ca, Client, PASSWORD, USER, der_of, password_hash};
use super::{free_port, listen_on, request, wait_long};

/// A directory of certificates and a web config naming them.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
    hash: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "ca");
        let (cert, key) = ca.issue(dir.path(), "server", true);
        Setup {
            dir,
            ca,
            cert,
            key,
            hash: password_hash(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` with TLS on the current certificate, `tls_extra` lines inside
    /// `tls_server_config`, the test user, and one response header.
    fn web_config(&self, name: &str, tls_extra: &str) -> PathBuf {
        let text = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{tls_extra}\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  {USER}: {}\n",
            self.cert.display(),
            self.key.display(),
            self.hash
        );
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// A daemon ticking one database, listening on `port` with `web`.
    fn daemon(&self, port: u16, web: &Path, extra: &[&str]) -> Daemon {
        let cluster = Cluster::shared();
        let db = pgq_db(cluster, "secured");
        let web_line = format!("http_web_config = {}", web.display());
        let mut lines = vec!["ticker_period = 0.5", &web_line as &str];
        let listen = listen_on(port);
        lines.push(&listen);
        lines.extend(extra);
        Daemon::start(&serving(cluster, &[&db], &lines))
    }

    fn client(&self) -> Client {
        Client::authorized(&self.ca.cert)
    }
}

/// Waits until the listener answers a TLS request with the right credentials.
fn wait_serving(daemon: &Daemon, client: &Client, port: u16) {
    wait_long(daemon, "the TLS listener", crate::harness::DEADLINE, || {
        client.get(port, "/livez").is_ok_and(|r| r.status == 200)
    });
}

/// Asserts that nothing pgqd printed holds the password or the hash.
fn assert_no_secret(text: &str, setup: &Setup) {
    assert!(!text.contains(PASSWORD), "password printed:\n{text}");
    assert!(!text.contains(&setup.hash), "hash printed:\n{text}");
    assert!(!text.contains("PRIVATE KEY"), "key printed:\n{text}");
}

/// With TLS and basic auth on: plain HTTP is answered 400 and never served; over
/// TLS, no credentials and a wrong password are 401 (with `WWW-Authenticate`), the
/// right ones 200 on every endpoint, with the configured header; `--healthcheck`
/// passes with `http_healthcheck_config` and fails without it; no secret printed.
#[test]
fn tls_and_basic_auth_guard_every_endpoint() {
    let setup = Setup::new();
    let web = setup.web_config("web.yml", "");
    let port = free_port();
    let health = setup.path("health.yml");
    fs::write(
        &health,
        format!("basic_auth:\n  username: {USER}\n  password_file: pass.txt\n"),
    )
    .unwrap();
    fs::write(setup.path("pass.txt"), format!("{PASSWORD}\n")).unwrap();
    let health_line = format!("http_healthcheck_config = {}", health.display());
    let daemon = setup.daemon(port, &web, &[&health_line]);
    let right = setup.client();
    wait_serving(&daemon, &right, port);

    let plain = request(port, "GET", "/metrics").expect("an answer to plain HTTP");
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(plain.body.contains("HTTPS"), "{plain:?}");
    assert!(!plain.body.contains("pgqd_build_info"), "{plain:?}");

    for path in ["/metrics", "/status", "/healthz", "/livez", "/readyz"] {
        let none = Client {
            basic: None,
            ..right.clone()
        }
        .get(port, path)
        .unwrap();
        assert_eq!(none.status, 401, "{path} without credentials: {none:?}");
        assert!(none.headers.contains("www-authenticate: Basic"), "{none:?}");
        let wrong = Client {
            basic: Some(format!("{USER}:not-{PASSWORD}")),
            ..right.clone()
        };
        let wrong = wrong.get(port, path).unwrap();
        assert_eq!(wrong.status, 401, "{path} with a wrong password: {wrong:?}");
        let nobody = Client {
            basic: Some(format!("nobody:{PASSWORD}")),
            ..right.clone()
        };
        assert_eq!(
            nobody.get(port, path).unwrap().status,
            401,
            "{path}: unknown user"
        );
    }
    let metrics = right.get(port, "/metrics").unwrap();
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(metrics.body.contains("pgqd_build_info"), "{metrics:?}");
    assert!(
        metrics.headers.contains("x-content-type-options: nosniff"),
        "{metrics:?}"
    );
    assert_eq!(right.get(port, "/status").unwrap().status, 200);

    // --healthcheck: the credentials of http_healthcheck_config, the pinned cert.
    let passed = healthcheck_passes(&daemon);
    assert!(
        passed,
        "--healthcheck with credentials; pgqd output:\n{}",
        daemon.output()
    );
    let config = daemon.config_path();
    for endpoint in ["--healthcheck=/livez", "--healthcheck=/readyz"] {
        let out = pgqd().arg(endpoint).arg(&config).output().unwrap();
        assert!(out.status.success(), "{endpoint}: {out:?}");
    }
    let bare = setup.path("bare.ini");
    let ini = fs::read_to_string(&config)
        .unwrap()
        .replace(&health_line, "");
    fs::write(&bare, ini).unwrap();
    let out = pgqd().arg("--healthcheck").arg(&bare).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "--healthcheck without credentials passed"
    );
    assert!(stderr.contains("401"), "{stderr}");
    assert_no_secret(&daemon.output(), &setup);
}

/// RequireAndVerifyClientCert: no client certificate and one from another CA are
/// refused at the handshake; one from `client_ca_file` is served; `--healthcheck`
/// presents the one of `http_healthcheck_config`.
#[test]
fn client_certificates_required_and_checked() {
    let setup = Setup::new();
    let dir = setup.dir.path();
    let client_ca = Ca::new(dir, "client-ca");
    let good = client_ca.issue(dir, "client", false);
    let stray = Ca::new(dir, "stray-ca").issue(dir, "stray", false);
    let web = setup.web_config(
        "web.yml",
        &format!(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            client_ca.cert.display()
        ),
    );
    let port = free_port();
    let health = setup.path("health.yml");
    fs::write(
        &health,
        format!(
            "basic_auth:\n  username: {USER}\n  password: {PASSWORD}\ntls_config:\n  cert_file: client.crt\n  key_file: client.key\n"
        ),
    )
    .unwrap();
    let health_line = format!("http_healthcheck_config = {}", health.display());
    let daemon = setup.daemon(port, &web, &[&health_line]);
    let right = Client {
        identity: Some(good),
        ..setup.client()
    };
    wait_serving(&daemon, &right, port);
    assert_eq!(right.get(port, "/metrics").unwrap().status, 200);

    let without = setup.client().get(port, "/metrics");
    assert!(
        without.is_err(),
        "served without a client certificate: {without:?}"
    );
    let other = Client {
        identity: Some(stray),
        ..setup.client()
    };
    let other = other.get(port, "/metrics");
    assert!(
        other.is_err(),
        "served a certificate of another CA: {other:?}"
    );

    let passed = healthcheck_passes(&daemon);
    assert!(
        passed,
        "--healthcheck with a client certificate; pgqd output:\n{}",
        daemon.output()
    );
}

/// SIGHUP after pgqd.ini names a new web config with a new certificate: the new
/// certificate is served without a restart (the old files are untouched, so only
/// the reload can have switched). Then a web config with an unknown field: the
/// error names the field and the file, and the listener keeps the previous settings.
#[test]
fn rotated_certificate_served_after_sighup() {
    let setup = Setup::new();
    let first = setup.web_config("web.yml", "");
    let port = free_port();
    let daemon = setup.daemon(port, &first, &[]);
    let client = setup.client();
    wait_serving(&daemon, &client, port);
    let (_, served) = client.get_with_cert(port, "/livez").unwrap();
    assert_eq!(served, der_of(&setup.cert));

    let dir = setup.dir.path();
    let (new_cert, new_key) = setup.ca.issue(dir, "rotated", true);
    let second = setup.path("web2.yml");
    let text = fs::read_to_string(&first)
        .unwrap()
        .replace(
            &setup.cert.display().to_string(),
            &new_cert.display().to_string(),
        )
        .replace(
            &setup.key.display().to_string(),
            &new_key.display().to_string(),
        );
    fs::write(&second, text).unwrap();
    let ini = fs::read_to_string(daemon.config_path()).unwrap();
    let ini = ini.replace(&first.display().to_string(), &second.display().to_string());
    fs::write(daemon.config_path(), ini).unwrap();
    daemon.signal(Signal::SIGHUP);
    wait_long(
        &daemon,
        "the rotated certificate",
        crate::harness::DEADLINE,
        || {
            client
                .get_with_cert(port, "/livez")
                .is_ok_and(|(r, cert)| r.status == 200 && cert == der_of(&new_cert))
        },
    );

    let broken = fs::read_to_string(&second)
        .unwrap()
        .replace("key_file", "key_fil");
    fs::write(&second, broken).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_log("unknown field `key_fil`");
    let output = daemon.output();
    let line = output.lines().find(|l| l.contains("key_fil")).unwrap();
    assert!(line.contains("web2.yml"), "{line}");
    assert!(line.contains("keeps its previous settings"), "{line}");
    let (response, cert) = client.get_with_cert(port, "/metrics").unwrap();
    assert_eq!((response.status, cert), (200, der_of(&new_cert)));
    assert_no_secret(&daemon.output(), &setup);
}

/// Certificate and key files replaced in place (as cert-manager or certbot do),
/// without a signal: the new certificate is served once the change is seen.
#[test]
fn rotated_certificate_served_on_change() {
    let setup = Setup::new();
    let web = setup.web_config("web.yml", "");
    let port = free_port();
    let daemon = setup.daemon(port, &web, &[]);
    let client = setup.client();
    wait_serving(&daemon, &client, port);
    let (new_cert, new_key) = setup.ca.issue(setup.dir.path(), "renewed", true);
    fs::copy(&new_key, &setup.key).unwrap();
    fs::copy(&new_cert, &setup.cert).unwrap();
    wait_long(
        &daemon,
        "the renewed certificate",
        crate::harness::DEADLINE,
        || {
            client
                .get_with_cert(port, "/livez")
                .is_ok_and(|(r, cert)| r.status == 200 && cert == der_of(&new_cert))
        },
    );
}

/// `pgqd --check`: a valid web config is summarised without its hash; an unknown
/// field is an error naming the field and the file; a key that does not fit the
/// certificate is an error naming the key file, never quoting a key; start-up with
/// a bad web config fails with the same message.
#[test]
fn check_validates_web_config() {
    let setup = Setup::new();
    let web = setup.web_config("web.yml", "");
    let ini = setup.path("pgqd.ini");
    let write_ini = |web: &Path| {
        fs::write(
            &ini,
            format!(
                "[pgqd]\nsyslog = 0\nhttp_listen = 127.0.0.1:{}\nhttp_web_config = {}\n",
                free_port(),
                web.display()
            ),
        )
        .unwrap()
    };
    write_ini(&web);
    let out = pgqd().arg("--check").arg(&ini).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("TLS on"), "{all}");
    assert_no_secret(&all, &setup);

    let unknown = setup.path("unknown.yml");
    fs::write(
        &unknown,
        format!("{}\nrate_limits: {{}}\n", fs::read_to_string(&web).unwrap()),
    )
    .unwrap();
    let (_, other_key) = setup.ca.issue(setup.dir.path(), "other", true);
    let mismatched = setup.path("mismatched.yml");
    let text = fs::read_to_string(&web).unwrap();
    let text = text.replace(
        &setup.key.display().to_string(),
        &other_key.display().to_string(),
    );
    fs::write(&mismatched, text).unwrap();
    for (file, expected) in [
        (&unknown, "unknown field `rate_limits`"),
        (&mismatched, "other.key"),
    ] {
        write_ini(file);
        let out = pgqd().arg("--check").arg(&ini).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert_no_secret(&stderr, &setup);
        let mut daemon = Daemon::start(
            &fs::read_to_string(&ini)
                .unwrap()
                .replace("[pgqd]\nsyslog = 0\n", ""),
        );
        assert_eq!(daemon.wait_exit(), Some(1), "{}", daemon.output());
        assert!(daemon.output().contains(expected), "{}", daemon.output());
    }
}

/// Whether `pgqd --healthcheck` with the daemon's config passes within the deadline.
fn healthcheck_passes(daemon: &Daemon) -> bool {
    let config = daemon.config_path();
    poll(crate::harness::DEADLINE, || {
        pgqd()
            .arg("--healthcheck")
            .arg(&config)
            .output()
            .unwrap()
            .status
            .success()
    })
}
