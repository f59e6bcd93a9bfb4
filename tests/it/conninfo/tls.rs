//! TLS against a cluster with `ssl = on` and certificates made by the test with the
//! `openssl` command: a CA, a server certificate for `localhost`/127.0.0.1, a client
//! certificate for the role `certuser`, and a second, untrusted CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgconninfo::Connected;

use super::{PASSWORD, connect, give_to_postgres, password_cluster, server_dir, value, write};
use crate::harness::Cluster;

/// Certificates: `ca.crt`, `rogue.crt` (another CA), `client.crt`/`client.key`
/// (ours, 0600) here; `server.crt`/`server.key` in `server`, readable by the server.
struct Pki {
    dir: tempfile::TempDir,
    server: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            server: server_dir(),
        };
        pki.ca("ca");
        pki.ca("rogue");
        pki.leaf(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        );
        pki.leaf("client", "certuser", "extendedKeyUsage=clientAuth");
        for name in ["server.crt", "server.key"] {
            let to = pki.server.path().join(name);
            std::fs::rename(pki.path(name), &to).unwrap();
            give_to_postgres(&to);
        }
        std::fs::copy(pki.path("ca.crt"), pki.server.path().join("ca.crt")).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn path_str(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn ca(&self, name: &str) {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "3",
                "-subj",
                &format!("/CN=pgqd test {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    /// A key and a certificate for `cn` signed by `ca`, with `extensions`.
    fn leaf(&self, name: &str, cn: &str, extensions: &str) {
        write(
            &self.path(&format!("{name}.ext")),
            &format!("basicConstraints=CA:FALSE\n{extensions}\n"),
            0o600,
        );
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        openssl(
            self.dir.path(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "3",
                "-extfile",
                &ext,
            ],
        );
        std::fs::set_permissions(
            self.path(&key),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A password cluster with TLS on; `certuser` may log in over TLS with a client
/// certificate only (`trust clientcert=verify-full`), `tlsonly` over TLS only and
/// `plainonly` without TLS only (both without password).
fn tls_cluster(pki: &Pki) -> (Cluster, tempfile::TempDir) {
    let server = |name: &str| pki.server.path().join(name).display().to_string();
    let settings = [
        "ssl = on".to_string(),
        format!("ssl_cert_file = '{}'", server("server.crt")),
        format!("ssl_key_file = '{}'", server("server.key")),
        format!("ssl_ca_file = '{}'", server("ca.crt")),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let hba = "hostssl all certuser 127.0.0.1/32 trust clientcert=verify-full\n\
        hostssl all tlsonly 127.0.0.1/32 trust\n\
        hostnossl all tlsonly 127.0.0.1/32 reject\n\
        hostnossl all plainonly 127.0.0.1/32 trust\n\
        hostssl all plainonly 127.0.0.1/32 reject\n";
    let (cluster, files) = password_cluster(hba, &settings);
    cluster.exec(
        "postgres",
        "create role certuser login; create role tlsonly login; create role plainonly login",
    );
    (cluster, files)
}

const IN_TLS: &str = "select ssl::text from pg_stat_ssl where pid = pg_backend_pid()";

/// Whether the connection uses TLS (`"true"` or `"false"`), checking that it has a
/// clear-text lane exactly when it does not.
fn lane_unless_tls(connected: &Connected) -> String {
    let used = value(connected, IN_TLS);
    assert_eq!(
        connected.lane.is_some(),
        used == "false",
        "a lane exactly when not over TLS (TLS used: {used})"
    );
    used
}

/// `require` without a root certificate connects over TLS without verifying (and
/// `prefer` uses TLS too, `disable` does not); `verify-ca` and `verify-full` with the
/// test CA connect; `require` with a root certificate in `~/.postgresql/root.crt`
/// verifies the chain like libpq, so an untrusted CA there makes it fail, naming the
/// file the certificate was checked against.
#[test]
fn tls_modes() {
    let pki = Pki::new();
    let (cluster, _files) = tls_cluster(&pki);
    let home = tempfile::tempdir().unwrap();
    let vars = [("PGPASSWORD", PASSWORD)];
    let base = |host: &str, mode: &str| {
        format!(
            "host={host} port={} user=app sslmode={mode} sslrootcert={}",
            cluster.port,
            pki.path_str("ca.crt")
        )
    };
    let tls_used = |base: String| {
        let connected = connect(home.path(), &base, "postgres", &vars).unwrap();
        lane_unless_tls(&connected)
    };
    let bare = format!("host=127.0.0.1 port={} user=app", cluster.port);
    assert_eq!(tls_used(format!("{bare} sslmode=require")), "true");
    assert_eq!(tls_used(format!("{bare} sslmode=prefer")), "true");
    assert_eq!(tls_used(format!("{bare} sslmode=disable")), "false");
    assert_eq!(tls_used(base("127.0.0.1", "verify-ca")), "true");
    assert_eq!(tls_used(base("localhost", "verify-full")), "true");
    assert_eq!(tls_used(base("127.0.0.1", "verify-full")), "true");

    let dot = home.path().join(".postgresql");
    std::fs::create_dir(&dot).unwrap();
    std::fs::copy(pki.path("rogue.crt"), dot.join("root.crt")).unwrap();
    let error = connect(
        home.path(),
        &format!("{bare} sslmode=require"),
        "postgres",
        &vars,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        error.contains("UnknownIssuer") || error.contains("unknown issuer"),
        "{error}"
    );
    let checked = format!(
        "(server certificate checked against \"{}\")",
        dot.join("root.crt").display()
    );
    assert!(error.contains(&checked), "{error}");
    std::fs::copy(pki.path("ca.crt"), dot.join("root.crt")).unwrap();
    assert_eq!(tls_used(format!("{bare} sslmode=require")), "true");
}

/// `verify-full` against a certificate for another host name fails with a message
/// naming the name it expected and the roots; `verify-ca` accepts the same server.
#[test]
fn tls_verify_full_rejects_another_host_name() {
    let pki = Pki::new();
    let (cluster, _files) = tls_cluster(&pki);
    let home = tempfile::tempdir().unwrap();
    let vars = [("PGPASSWORD", PASSWORD)];
    let base = |mode: &str| {
        format!(
            "host=wronghost hostaddr=127.0.0.1 port={} user=app sslmode={mode} sslrootcert={}",
            cluster.port,
            pki.path_str("ca.crt")
        )
    };
    let error = connect(home.path(), &base("verify-full"), "postgres", &vars)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("server at \"wronghost\" (127.0.0.1)"),
        "{error}"
    );
    assert!(
        error.contains("certificate not valid for name \"wronghost\""),
        "{error}"
    );
    assert!(
        error.contains("localhost"),
        "names what the certificate is valid for: {error}"
    );
    assert!(
        error.contains("(server certificate checked against \""),
        "{error}"
    );
    let connected = connect(home.path(), &base("verify-ca"), "postgres", &vars).unwrap();
    assert_eq!(value(&connected, IN_TLS), "true");
}

/// A client certificate logs `certuser` in where pg_hba says `clientcert=verify-full`,
/// from `sslcert`/`sslkey` or from `~/.postgresql/postgresql.{crt,key}`; without one
/// the server refuses.
#[test]
fn tls_client_certificate() {
    let pki = Pki::new();
    let (cluster, _files) = tls_cluster(&pki);
    let home = tempfile::tempdir().unwrap();
    let base = format!(
        "host=localhost port={} user=certuser sslmode=verify-full sslrootcert={}",
        cluster.port,
        pki.path_str("ca.crt")
    );
    let explicit = format!(
        "{base} sslcert={} sslkey={}",
        pki.path_str("client.crt"),
        pki.path_str("client.key")
    );
    let connected = connect(home.path(), &explicit, "postgres", &[]).unwrap();
    let dn = value(
        &connected,
        "select client_dn from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert_eq!(dn, "/CN=certuser");

    let error = connect(home.path(), &base, "postgres", &[]).err().unwrap();
    assert_eq!(error.code().map(|c| c.code()), Some("28000"), "{error}");

    let dot = home.path().join(".postgresql");
    std::fs::create_dir(&dot).unwrap();
    std::fs::copy(pki.path("client.crt"), dot.join("postgresql.crt")).unwrap();
    std::fs::copy(pki.path("client.key"), dot.join("postgresql.key")).unwrap();
    let connected = connect(home.path(), &base, "postgres", &[]).unwrap();
    assert_eq!(value(&connected, "select current_user"), "certuser");
}

/// libpq's per-host fallbacks: `prefer` retries without TLS when the server refuses
/// the login over TLS, `allow` retries with TLS when it refuses it without; `require`
/// and `disable` do not retry.
#[test]
fn tls_allow_and_prefer_fall_back() {
    let pki = Pki::new();
    let (cluster, _files) = tls_cluster(&pki);
    let home = tempfile::tempdir().unwrap();
    let base = |user: &str, mode: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} sslmode={mode}",
            cluster.port
        )
    };
    let tls_used = |user: &str, mode: &str| {
        let connected = connect(home.path(), &base(user, mode), "postgres", &[]);
        lane_unless_tls(&connected.unwrap())
    };
    assert_eq!(tls_used("plainonly", "prefer"), "false");
    assert_eq!(tls_used("tlsonly", "allow"), "true");
    assert_eq!(tls_used("tlsonly", "prefer"), "true");
    assert_eq!(tls_used("plainonly", "allow"), "false");
    for (user, mode) in [("plainonly", "require"), ("tlsonly", "disable")] {
        let error = connect(home.path(), &base(user, mode), "postgres", &[])
            .err()
            .unwrap();
        assert_eq!(error.code().map(|c| c.code()), Some("28000"), "{error}");
    }
}
