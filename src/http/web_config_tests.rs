//! The web config read from text: what is accepted, what is refused and how.

use super::*;

const HASH: &str = "$2b$04$Zd0YZKH4Cxt8mCwsZI3K0.RAXlwDvnkt.gnGpKyPw5ckLpoU9SEeq";

fn parse(text: &str) -> Result<WebConfig, String> {
    WebConfig::parse(text, Path::new("/etc/pgqd/web.yml"))
}

/// exporter-toolkit's example file reads, paths anchored at the file's directory,
/// TLS 1.2 the default minimum.
#[test]
fn full_file() {
    let config = parse(&format!(
        "tls_server_config:\n  cert_file: pgqd.crt\n  key_file: /k/pgqd.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  prometheus: {HASH}\n"
    ))
    .unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.cert_file, Path::new("/etc/pgqd/pgqd.crt"));
    assert_eq!(tls.key_file, Path::new("/k/pgqd.key"));
    assert_eq!(tls.client_ca_file.unwrap(), Path::new("/etc/pgqd/ca.crt"));
    assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert_eq!(
        config.headers,
        vec![("X-Frame-Options".into(), "deny".into())]
    );
    assert_eq!(config.users.len(), 1);
}

/// An empty file, or one without TLS, turns nothing on.
#[test]
fn empty() {
    assert_eq!(parse("").unwrap().tls, None);
    assert_eq!(parse("# nothing\n").unwrap().tls, None);
    assert_eq!(parse("tls_server_config: {}\n").unwrap().tls, None);
}

/// An unknown field is named, at any depth.
#[test]
fn unknown_fields() {
    for (text, field) in [
        ("tls_serve_config: {}\n", "tls_serve_config"),
        ("tls_server_config:\n  cert_fil: a\n", "cert_fil"),
        ("http_server_config:\n  header: {}\n", "header"),
    ] {
        let error = parse(text).unwrap_err();
        assert!(
            error.contains(&format!("unknown field `{field}`")),
            "{error}"
        );
    }
}

/// No refused value is quoted back: a hash in the wrong place stays unseen.
#[test]
fn values_not_quoted() {
    let error = parse(&format!("basic_auth_users: \"{HASH}\"\n")).unwrap_err();
    assert!(!error.contains("Zd0YZ"), "{error}");
    let error = parse("basic_auth_users:\n  u: notahash-secret\n").unwrap_err();
    assert!(error.contains("user \"u\""), "{error}");
    assert!(!error.contains("secret"), "{error}");
}

/// Wrong combinations and versions are refused with the field's name.
#[test]
fn refusals() {
    let cases = [
        ("cert_file: a\n", "key_file is missing"),
        ("key_file: a\n", "cert_file is missing"),
        (
            "cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        (
            "cert_file: a\n  key_file: b\n  client_ca_file: c\n",
            "does not verify",
        ),
        (
            "cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n",
            "unknown type",
        ),
        (
            "cert_file: a\n  key_file: b\n  min_version: TLS10\n",
            "not supported",
        ),
        (
            "cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
            "above",
        ),
    ];
    for (tls, expected) in cases {
        let error = parse(&format!("tls_server_config:\n  {tls}")).unwrap_err();
        assert!(error.contains(expected), "{tls}: {error}");
    }
    let error = parse("http_server_config:\n  headers:\n    Server: x\n").unwrap_err();
    assert!(error.contains("not allowed"), "{error}");
}
