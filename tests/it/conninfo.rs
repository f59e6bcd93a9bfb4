//! Connections like libpq, against real clusters: passwords from `.pgpass`,
//! `PGPASSWORD` and service files; no password in any output; where to connect
//! (in `conninfo/hosts.rs`); TLS (in `conninfo/tls.rs`); the connection's lane (in
//! `conninfo/lane.rs`).
//!
//! The `resolve`/`connect` API is driven directly, with the environment injected
//! (`resolve_with`) and HOME pointing at a temp dir, so no test touches the process
//! environment or the real `~/.pgpass`.

mod hosts;
mod lane;
mod tls;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgconninfo::{ConnStr, ConnectError, Connected, Defaults, Target};

use crate::harness::{Cluster, Daemon, pgqd, unique, wait_until};

/// The password of the `app` role in password clusters. Tests grep outputs for it.
pub const PASSWORD: &str = "Scram-s3cret-8f2e";

/// Runs `future` on this test thread's runtime, which lives as long as the thread,
/// so connections opened in one call keep working in the next.
pub fn block<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

pub fn defaults() -> Defaults {
    Defaults {
        application_name: "pgqd".into(),
        connect_timeout: Duration::from_secs(10),
    }
}

/// An environment holding only `vars`, with HOME at `home`.
pub fn env_of(home: &Path, vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.insert("HOME".into(), home.display().to_string());
    map.entry("PGSYSCONFDIR".into())
        .or_insert_with(|| home.display().to_string());
    move |name| map.get(name).cloned()
}

/// Resolves `base` for `db` with HOME at `home` and only `vars` set.
pub fn resolve(home: &Path, base: &str, db: &str, vars: &[(&str, &str)]) -> Target {
    pgconninfo::resolve_with(&ConnStr::new(base), db, &defaults(), &env_of(home, vars))
        .unwrap_or_else(|e| panic!("resolve {}: {e}", pgconninfo::redact(base)))
}

/// Resolves and connects.
pub fn connect(
    home: &Path,
    base: &str,
    db: &str,
    vars: &[(&str, &str)],
) -> Result<Connected, ConnectError> {
    block(resolve(home, base, db, vars).connect())
}

/// The first column of the first row of `sql`, as text.
pub fn value(connected: &Connected, sql: &str) -> String {
    block(async {
        let rows = connected.client.simple_query(sql).await.unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap()
    })
}

/// A temp dir the server, running as `postgres` when we are root, can read.
pub fn server_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    give_to_postgres(dir.path());
    dir
}

/// Makes `path` the `postgres` user's when we are root.
pub fn give_to_postgres(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(path, Some(pg.uid), Some(pg.gid)).unwrap();
    }
}

/// Writes `text` to `path` with `mode`.
pub fn write(path: &Path, text: &str, mode: u32) -> PathBuf {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// A cluster whose non-`postgres` roles log in with scram-sha-256 over the socket
/// and TCP on 127.0.0.1, with `extra` settings and a superuser `app` (password
/// [`PASSWORD`]). Returns the cluster and the dir holding its pg_hba.conf.
pub fn password_cluster(hba_extra: &str, extra: &[&str]) -> (Cluster, tempfile::TempDir) {
    let files = server_dir();
    let hba = format!(
        "local all postgres trust\n{hba_extra}local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
    );
    let hba_path = write(&files.path().join("pg_hba.conf"), &hba, 0o644);
    let mut settings = vec![
        "listen_addresses = '127.0.0.1'".to_string(),
        format!("hba_file = '{}'", hba_path.display()),
        "password_encryption = 'scram-sha-256'".to_string(),
    ];
    settings.extend(extra.iter().map(|s| s.to_string()));
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with(&settings);
    cluster.exec(
        "postgres",
        &format!("create role app login superuser password '{PASSWORD}'"),
    );
    (cluster, files)
}

/// `host=<socket dir> port=<port> user=app`.
fn app_socket(cluster: &Cluster) -> String {
    format!(
        "host={} port={} user=app",
        cluster.dir.display(),
        cluster.port
    )
}

/// scram-sha-256 works with the password from a 0600 `.pgpass` in HOME, matched by
/// the socket directory; the same file with mode 0644 is ignored with libpq's warning
/// and the login then fails with libpq's message, without showing the password.
#[test]
fn password_from_pgpass() {
    let (cluster, _files) = password_cluster("", &[]);
    let home = tempfile::tempdir().unwrap();
    let line = format!(
        "{}:{}:postgres:app:{PASSWORD}\n",
        cluster.dir.display(),
        cluster.port
    );
    let pgpass = write(&home.path().join(".pgpass"), &line, 0o600);
    let connected = connect(home.path(), &app_socket(&cluster), "postgres", &[]).unwrap();
    assert_eq!(value(&connected, "select current_user"), "app");

    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let target = resolve(home.path(), &app_socket(&cluster), "postgres", &[]);
    let warning = target.warnings().join("\n");
    assert!(warning.contains("has group or world access"), "{warning}");
    assert!(warning.contains(&pgpass.display().to_string()), "{warning}");
    let error = block(target.connect())
        .err()
        .expect("login without a password");
    let shown = format!("{error} {error:?} {target:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(
        error
            .to_string()
            .ends_with("failed: fe_sendauth: no password supplied"),
        "{error}"
    );
}

/// A wrong password from `.pgpass` fails with SQLSTATE 28P01 and libpq's hint naming
/// the file, never the password itself.
#[test]
fn wrong_password_from_pgpass_names_the_file() {
    let (cluster, _files) = password_cluster("", &[]);
    let home = tempfile::tempdir().unwrap();
    let wrong = "not-the-Scram-pw";
    write(
        &home.path().join(".pgpass"),
        &format!("*:*:*:app:{wrong}\n"),
        0o600,
    );
    let error = connect(home.path(), &app_socket(&cluster), "postgres", &[])
        .err()
        .unwrap();
    assert_eq!(error.code().map(|c| c.code()), Some("28P01"));
    let shown = error.to_string();
    assert!(shown.contains("password retrieved from file"), "{shown}");
    assert!(
        shown.contains(&format!("server on socket \"{}", cluster.dir.display())),
        "{shown}"
    );
    assert!(!shown.contains(wrong), "{shown}");
}

/// scram-sha-256 works with `PGPASSWORD`, over TCP, with host and port from the
/// environment too.
#[test]
fn password_from_pgpassword() {
    let (cluster, _files) = password_cluster("", &[]);
    let home = tempfile::tempdir().unwrap();
    let port = cluster.port.to_string();
    let vars = [
        ("PGPASSWORD", PASSWORD),
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", &port),
    ];
    let connected = connect(home.path(), "user=app sslmode=disable", "postgres", &vars).unwrap();
    assert_eq!(value(&connected, "select current_user"), "app");
    assert_eq!(
        value(&connected, "select inet_server_addr()::text"),
        "127.0.0.1/32"
    );
}

/// scram-sha-256 works from a service file (`~/.pg_service.conf`) named by `service=`,
/// and from the system file in PGSYSCONFDIR named by `PGSERVICE`.
#[test]
fn password_from_service_file() {
    let (cluster, _files) = password_cluster("", &[]);
    let home = tempfile::tempdir().unwrap();
    let section = format!(
        "[pgq]\nhost={}\nport={}\nuser=app\npassword={PASSWORD}\napplication_name=from_service\n",
        cluster.dir.display(),
        cluster.port
    );
    write(&home.path().join(".pg_service.conf"), &section, 0o600);
    let connected = connect(home.path(), "service=pgq", "postgres", &[]).unwrap();
    assert_eq!(
        value(&connected, "select current_setting('application_name')"),
        "from_service"
    );

    let sysconf = tempfile::tempdir().unwrap();
    write(&sysconf.path().join("pg_service.conf"), &section, 0o644);
    let vars = [
        ("PGSERVICE", "pgq"),
        ("PGSYSCONFDIR", sysconf.path().to_str().unwrap()),
    ];
    let empty_home = tempfile::tempdir().unwrap();
    let connected = connect(empty_home.path(), "", "postgres", &vars).unwrap();
    assert_eq!(value(&connected, "select current_user"), "app");
}

/// The daemon ticks with a password in a URI base_connstr, and neither its output,
/// nor that of a daemon given a wrong password in a key=value one, nor `--check` on a
/// group-readable config (which warns about it) contains the password.
#[test]
fn daemon_never_shows_the_password() {
    let (cluster, _files) = password_cluster("", &[]);
    let db = cluster.create_pgq_db("secret");
    cluster.exec(&db, "select pgq.create_queue('q')");
    let socket = cluster.dir.display().to_string().replace('/', "%2F");
    let port = cluster.port;
    let ini =
        |base: String| format!("base_connstr = {base}\ndatabase_list = {db}\nticker_period = 0.2");
    let daemon = Daemon::start(&ini(format!("postgresql://app:{PASSWORD}@{socket}:{port}")));
    wait_until("ticks made with the password in a URI", || {
        crate::harness::tick_count(&cluster, &db, "q") > 1
    });
    let key_value = |password: &str| {
        format!(
            "host={} port={port} user=app password={password}",
            cluster.dir.display()
        )
    };
    let wrong = "Wrong-pw-4d1c";
    let refused = Daemon::start(&ini(key_value(wrong)));
    wait_until("the refused login logged", || {
        refused.output().contains("28P01")
    });

    let config = daemon.config_path();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = pgqd().arg("--check").arg(&config).output().unwrap();
    let check_output = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check_output.contains("holds a password"), "{check_output}");
    for (what, output) in [
        ("daemon", daemon.output()),
        ("refused", refused.output()),
        ("--check", check_output),
    ] {
        assert!(
            !output.contains(PASSWORD) && !output.contains(wrong),
            "{what} output shows a password:\n{output}"
        );
    }
}

/// An unsupported key is refused by name at `--check`, before any connection.
#[test]
fn check_refuses_unsupported_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(format!("{}.ini", unique("check")));
    write(
        &config,
        "[pgqd]\nbase_connstr = host=/tmp krbsrvname=postgres\n",
        0o600,
    );
    let out = pgqd().arg("--check").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unsupported connection option \"krbsrvname\""),
        "{stderr}"
    );
}
