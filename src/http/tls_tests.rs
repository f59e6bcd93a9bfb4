//! Each `client_auth_type` against each kind of client, by a full handshake in
//! memory; cipher suite names; key and certificate files that do not fit.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

use super::*;

/// A CA in `dir` that signs leaves.
struct TestCa(CertifiedIssuer<'static, KeyPair>, PathBuf);

impl TestCa {
    fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, issuer.pem()).unwrap();
        TestCa(issuer, path)
    }

    fn leaf(&self, dir: &Path, name: &str, usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        let paths = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&paths.0, cert.pem()).unwrap();
        std::fs::write(&paths.1, key.serialize_pem()).unwrap();
        paths
    }
}

fn settings(cert: &Path, key: &Path, auth: ClientAuth, ca: Option<&Path>) -> TlsSettings {
    TlsSettings {
        cert_file: cert.into(),
        key_file: key.into(),
        client_auth: auth,
        client_ca_file: ca.map(Path::to_path_buf),
        min_version: TlsVersion::Tls12,
        max_version: TlsVersion::Tls13,
        cipher_suites: Vec::new(),
        prefer_server_cipher_suites: true,
    }
}

fn client(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("ca", ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certificates("cert", cert).unwrap(),
                private_key(key).unwrap(),
            )
            .unwrap(),
    })
}

/// A whole handshake between the two configs, in memory; `Err` from either side.
fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Result<(), rustls::Error> {
    let mut s = ServerConnection::new(server)?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(client, name)?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

/// Who gets through under each policy: no certificate, one from the client CA, one
/// from another CA.
#[test]
fn client_auth_policies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = TestCa::new(d, "server-ca");
    let (cert, key) = server_ca.leaf(d, "server", ExtendedKeyUsagePurpose::ServerAuth);
    let client_ca = TestCa::new(d, "client-ca");
    let good = client_ca.leaf(d, "good", ExtendedKeyUsagePurpose::ClientAuth);
    let stray = TestCa::new(d, "stray-ca").leaf(d, "stray", ExtendedKeyUsagePurpose::ClientAuth);
    use ClientAuth::*;
    // (policy, without a certificate, the client CA's, another CA's)
    let table = [
        (NoClientCert, true, true, true),
        (RequestClientCert, true, true, true),
        (RequireAnyClientCert, false, true, true),
        (VerifyClientCertIfGiven, true, true, false),
        (RequireAndVerifyClientCert, false, true, false),
    ];
    for (auth, none, right, other) in table {
        let ca = auth.verifies().then_some(client_ca.1.as_path());
        let server = server_config(&settings(&cert, &key, auth, ca)).unwrap();
        for (identity, expected) in [(None, none), (Some(&good), right), (Some(&stray), other)] {
            let outcome = handshake(server.clone(), client(&server_ca.1, identity));
            assert_eq!(
                outcome.is_ok(),
                expected,
                "{auth:?} with {identity:?}: {outcome:?}"
            );
        }
    }
}

/// min_version TLS13 refuses a TLS 1.2-only client.
#[test]
fn min_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d, "ca");
    let (cert, key) = ca.leaf(d, "server", ExtendedKeyUsagePurpose::ServerAuth);
    let mut tls = settings(&cert, &key, ClientAuth::NoClientCert, None);
    tls.min_version = TlsVersion::Tls13;
    let server = server_config(&tls).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(certificates("ca", &ca.1).unwrap().remove(0))
        .unwrap();
    let tls12 = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    assert!(handshake(server.clone(), Arc::new(tls12)).is_err());
    assert!(handshake(server, client(&ca.1, None)).is_ok());
}

/// Go's suite names are taken, ChaCha20 with or without `_SHA256`; an unknown name
/// is refused with the list of supported ones.
#[test]
fn cipher_suite_names() {
    let p = provider();
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let chosen = cipher_suites(
        &p,
        &names(&[
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ]),
    )
    .unwrap();
    let tls12 = chosen
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .count();
    assert_eq!(tls12, 2);
    assert!(
        chosen
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13)
    );
    let error = cipher_suites(&p, &names(&["TLS_RSA_WITH_RC4_128_SHA"])).unwrap_err();
    assert!(error.contains("not supported (supported: TLS_"), "{error}");
}

/// A key that is not the certificate's, and files that are not PEM, are refused
/// naming the file and never quoting it.
#[test]
fn files_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d, "ca");
    let (cert, _) = ca.leaf(d, "a", ExtendedKeyUsagePurpose::ServerAuth);
    let (_, other_key) = ca.leaf(d, "b", ExtendedKeyUsagePurpose::ServerAuth);
    let tls = settings(&cert, &other_key, ClientAuth::NoClientCert, None);
    let error = server_config(&tls).unwrap_err();
    assert!(
        error.contains("b.key") && error.contains("does not fit"),
        "{error}"
    );
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "secret garbage\n").unwrap();
    let error = server_config(&settings(
        &garbage,
        &other_key,
        ClientAuth::NoClientCert,
        None,
    ))
    .unwrap_err();
    assert!(
        error.contains("garbage.pem") && !error.contains("secret"),
        "{error}"
    );
    let missing = settings(
        &d.join("none.crt"),
        &other_key,
        ClientAuth::NoClientCert,
        None,
    );
    let error = server_config(&missing).unwrap_err();
    assert!(error.contains("none.crt"), "{error}");
}
