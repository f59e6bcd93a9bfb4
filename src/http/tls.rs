//! The rustls side of `tls_server_config`: the certificate chain and key, the client
//! certificate policy, the protocol versions and TLS 1.2 cipher suites, built into one
//! `ServerConfig`. Errors name the setting and the file, never the key's content.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::web_config::{ClientAuth, TlsSettings, TlsVersion};

/// The one crypto provider: ring, as the PostgreSQL side (`pgconninfo`) uses.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Reads the files `tls` names and builds the server's TLS settings.
pub fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates("cert_file", &tls.cert_file)?;
    let key = private_key(&tls.key_file)?;
    let mut provider = provider();
    if !tls.cipher_suites.is_empty() {
        provider.cipher_suites = cipher_suites(&provider, &tls.cipher_suites)?;
    }
    let provider = Arc::new(provider);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (tls.min_version..=tls.max_version).contains(v))
    .map(|(_, version)| version)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match client_verifier(tls, &provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "tls_server_config: the key in key_file \"{}\" does not fit the certificate: {e}",
            shown(&tls.key_file)
        )
    })?;
    config.ignore_client_order = tls.prefer_server_cipher_suites;
    Ok(Arc::new(config))
}

/// Every certificate in the PEM file at `path` (at least one).
pub fn certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = || format!("tls_server_config.{field} \"{}\"", shown(path));
    std::fs::metadata(path).map_err(|e| format!("{}: {}", what(), crate::config::io_reason(&e)))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {}", what(), pem_reason(e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", what()));
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`; errors never quote it.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let what = || format!("tls_server_config.key_file \"{}\"", shown(path));
    std::fs::metadata(path).map_err(|e| format!("{}: {}", what(), crate::config::io_reason(&e)))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {}", what(), pem_reason(e)))
}

fn pem_reason(error: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(e) => crate::config::io_reason(&e),
        Error::NoItemsFound => "no PEM section of the expected kind in it".into(),
        // The other variants describe the encoding; none carries the file's bytes
        // as text, but a short fixed message is all a reader needs.
        _ => "not a valid PEM file".into(),
    }
}

fn shown(path: &Path) -> String {
    crate::config::escape(&path.display().to_string())
}

/// The verifier `client_auth_type` asks for; `None` for NoClientCert.
fn client_verifier(
    tls: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
    let any = |mandatory| {
        Some(Arc::new(AnyClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        }) as Arc<dyn ClientCertVerifier>)
    };
    Ok(match (tls.client_auth, &tls.client_ca_file) {
        (ClientAuth::NoClientCert, _) => None,
        (ClientAuth::RequestClientCert, _) => any(false),
        (ClientAuth::RequireAnyClientCert, _) => any(true),
        (auth, Some(ca_file)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client_ca_file", ca_file)? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "tls_server_config.client_ca_file \"{}\": {e}",
                        shown(ca_file)
                    )
                })?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            Some(builder.build().map_err(|e| {
                format!(
                    "tls_server_config.client_ca_file \"{}\": {e}",
                    shown(ca_file)
                )
            })?)
        }
        (auth, None) => {
            return Err(format!(
                "tls_server_config: client_auth_type {} needs client_ca_file",
                auth.as_str()
            ));
        }
    })
}

/// The TLS 1.2 suites named (Go's names, which are the IANA names; Go also writes
/// the ChaCha20 ones without `_SHA256`), plus every TLS 1.3 suite, as Go does.
fn cipher_suites(
    provider: &CryptoProvider,
    names: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let name_of = |suite: &rustls::SupportedCipherSuite| format!("{:?}", suite.suite());
    let tls12: Vec<_> = (provider.cipher_suites.iter())
        .filter(|s| s.version() == &rustls::version::TLS12)
        .collect();
    let mut chosen = Vec::new();
    for name in names {
        let found = tls12.iter().find(|s| {
            let known = name_of(s);
            known == *name || known.strip_suffix("_SHA256") == Some(name.as_str())
        });
        match found {
            Some(suite) => chosen.push(**suite),
            None => {
                let known: Vec<String> = tls12.iter().map(|s| name_of(s)).collect();
                return Err(format!(
                    "tls_server_config.cipher_suites: \"{}\" is not supported (supported: {})",
                    crate::config::escape(name),
                    known.join(", ")
                ));
            }
        }
    }
    chosen
        .extend((provider.cipher_suites.iter()).filter(|s| s.version() == &rustls::version::TLS13));
    Ok(chosen)
}

/// RequestClientCert and RequireAnyClientCert: any certificate is taken (no CA
/// says otherwise), but the client must still prove it holds its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
