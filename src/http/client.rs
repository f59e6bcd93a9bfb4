//! The client side of the listener, for `pgqd --healthcheck`: one `GET` on the
//! loopback, over TLS when the daemon's web config turns it on, with the credentials
//! of `http_healthcheck_config`.
//!
//! The daemon's certificate is trusted by pinning, not by a CA: the client reads
//! the same `cert_file` as the daemon it checks and accepts exactly that certificate
//! (the daemon must still prove it holds the key), whatever name it carries. So a
//! health check needs neither a CA bundle nor a certificate made for `localhost`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use serde::Deserialize;

use super::tls;
use super::web_config::WebConfig;

/// `http_healthcheck_config`: a subset of a Prometheus scrape config's HTTP client
/// settings, in its words.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    #[serde(default)]
    basic_auth: Option<BasicAuth>,
    #[serde(default)]
    tls_config: Option<ClientTls>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuth {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
}

/// Never shows the password.
impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "..."))
            .field("password_file", &self.password_file)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl ClientFile {
    /// Reads the file at `path`; relative paths are taken from its directory.
    /// Errors name the file and the field, never a value.
    pub fn load(path: &Path) -> Result<ClientFile, String> {
        let shown = crate::config::escape(&path.display().to_string());
        let fail = |reason: String| format!("http_healthcheck_config \"{shown}\": {reason}");
        let text = std::fs::read_to_string(path).map_err(|e| fail(crate::config::io_reason(&e)))?;
        let mut file: ClientFile = serde_yaml_ng::from_str::<Option<ClientFile>>(&text)
            .map_err(|e| fail(super::web_config::unquoted(&e.to_string())))?
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(auth) = &mut file.basic_auth {
            if auth.password.is_some() == auth.password_file.is_some() {
                return Err(fail(
                    "basic_auth: set one of password and password_file".into(),
                ));
            }
            if let Some(file) = &auth.password_file {
                let file = dir.join(file);
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    fail(format!(
                        "basic_auth.password_file \"{}\": {}",
                        crate::config::escape(&file.display().to_string()),
                        crate::config::io_reason(&e)
                    ))
                })?;
                auth.password = Some(text.trim_end_matches(['\r', '\n']).to_string());
            }
        }
        if let Some(tls) = &mut file.tls_config {
            tls.cert_file = dir.join(&tls.cert_file);
            tls.key_file = dir.join(&tls.key_file);
            tls::certificates("cert_file", &tls.cert_file).map_err(&fail)?;
            tls::private_key(&tls.key_file).map_err(&fail)?;
        }
        Ok(file)
    }
}

/// Sends `GET path` to `address` and returns the status line's code and reason.
pub fn get(
    address: SocketAddr,
    path: &str,
    web: Option<&WebConfig>,
    client: &ClientFile,
    timeout: Duration,
) -> Result<String, String> {
    let stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = request(path, client);
    let answer = match web.and_then(|w| w.tls.as_ref()) {
        None => exchange(stream, &request),
        Some(server) => {
            let config = client_config(&server.cert_file, client)?;
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let connection = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
            exchange(StreamOwned::new(connection, stream), &request)
        }
    }
    .map_err(|e| format!("cannot ask {address}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    status_line
        .split_once(' ')
        .map(|(_, status)| status.to_string())
        .ok_or_else(|| format!("no HTTP answer from {address}"))
}

/// An HTTP/1.0 request (the server closes after one answer), with basic auth if given.
fn request(path: &str, client: &ClientFile) -> String {
    use base64::Engine;
    let auth = match &client.basic_auth {
        Some(BasicAuth {
            username,
            password: Some(password),
            ..
        }) => {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            format!("Authorization: Basic {token}\r\n")
        }
        _ => String::new(),
    };
    format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n")
}

fn exchange(mut stream: impl Read + Write, request: &str) -> std::io::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut head = Vec::new();
    // A TLS peer may close without close_notify after the answer: what was read counts.
    let _ = stream.take(4096).read_to_end(&mut head);
    if head.is_empty() {
        return Err(std::io::Error::other(
            "the connection closed without an answer",
        ));
    }
    Ok(head)
}

/// Trusts exactly the certificates of the daemon's `cert_file`; presents the client
/// certificate of `http_healthcheck_config` when it has one.
fn client_config(server_cert: &Path, client: &ClientFile) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(tls::provider());
    let pinned = Pinned {
        certificates: tls::certificates("cert_file", server_cert)?,
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(pinned));
    let config = match &client.tls_config {
        None => builder.with_no_client_auth(),
        Some(tls) => {
            let chain = tls::certificates("cert_file", &tls.cert_file)?;
            let key = tls::private_key(&tls.key_file)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("http_healthcheck_config tls_config: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// The server's certificate must be one of these.
#[derive(Debug)]
struct Pinned {
    certificates: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .certificates
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the daemon presents a certificate other than the one in its cert_file".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
