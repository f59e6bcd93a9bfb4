//! Certificates made at test time (rcgen), a web config that uses them, and a real
//! TLS client (rustls) to ask the secured listener: what the secured-listener tests
//! and the Prometheus test share.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::Response;

/// The password of the test user `prometheus`, and its bcrypt hash (cost 4: fast).
pub const USER: &str = "prometheus";
pub const PASSWORD: &str = "s3cret-scrape-pass";

/// A certificate authority that signs server and client certificates into `dir`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub cert: PathBuf,
}

impl Ca {
    /// A new CA whose certificate is written to `dir/NAME.crt`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("pgqd test {name}"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        fs::write(&cert, issuer.pem()).unwrap();
        Ca { issuer, cert }
    }

    /// A leaf certificate and key for `localhost`/`127.0.0.1`, for a server or a
    /// client, written to `dir/NAME.crt` and `dir/NAME.key`; returns the two paths.
    pub fn issue(&self, dir: &Path, name: &str, server: bool) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// The bcrypt hash of [`PASSWORD`].
pub fn password_hash() -> String {
    bcrypt::hash(PASSWORD, 4).unwrap()
}

/// How a test client connects.
#[derive(Default, Clone)]
pub struct Client {
    /// The CA to trust for the server's certificate.
    pub ca: Option<PathBuf>,
    /// A client certificate and key to present.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// `user:password` for basic auth.
    pub basic: Option<String>,
}

impl Client {
    /// Trusting `ca`, with the test user's right credentials.
    pub fn authorized(ca: &Path) -> Client {
        Client {
            ca: Some(ca.to_path_buf()),
            basic: Some(format!("{USER}:{PASSWORD}")),
            ..Client::default()
        }
    }

    /// `GET path` over TLS to 127.0.0.1:`port` as HTTP/1.0; `Err` says why the
    /// handshake or the exchange failed.
    pub fn get(&self, port: u16, path: &str) -> Result<Response, String> {
        self.get_with_cert(port, path).map(|(response, _)| response)
    }

    /// [`Client::get`], with the server's end-entity certificate (DER).
    pub fn get_with_cert(&self, port: u16, path: &str) -> Result<(Response, Vec<u8>), String> {
        let config = self.config();
        let name = ServerName::try_from("localhost").unwrap();
        let mut connection = rustls::ClientConnection::new(config, name).unwrap();
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::Stream::new(&mut connection, &mut tcp);
        let auth = self.basic.as_ref().map_or(String::new(), |pair| {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(pair);
            format!("Authorization: Basic {token}\r\n")
        });
        let head = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n");
        tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        if let Err(e) = tls.read_to_end(&mut raw)
            && raw.is_empty()
        {
            return Err(e.to_string());
        }
        let peer = (connection.peer_certificates())
            .and_then(|certs| certs.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let (headers, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
        let status = headers.split(' ').nth(1).and_then(|s| s.parse().ok());
        let status = status.ok_or_else(|| format!("no status: {headers:?}"))?;
        let response = Response {
            status,
            headers: headers.to_string(),
            body: body.to_string(),
        };
        Ok((response, peer))
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &self.ca {
            for cert in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let key = PrivateKeyDer::from_pem_file(key).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        Arc::new(config)
    }
}

/// The DER of the first certificate in the PEM file at `path`.
pub fn der_of(path: &Path) -> Vec<u8> {
    let cert = CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    cert.as_ref().to_vec()
}
