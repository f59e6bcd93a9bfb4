//! The TLS side of a connection, with rustls: which root certificates, CRL, client
//! certificate and protocol versions, from `sslrootcert`, `sslcrl`, `sslcert`, `sslkey`,
//! `sslsni` and `ssl_{min,max}_protocol_version` (the files default to libpq's under
//! `~/.postgresql/`, filled in by `settings.rs`), with libpq's file checks.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::ConnInfoError;
use crate::settings::Conninfo;
use crate::verify::Check;

/// `sslmode`, with libpq's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

type Versions = Vec<&'static rustls::SupportedProtocolVersion>;

/// The TLS settings, typed.
#[derive(Debug)]
pub(crate) struct Options {
    /// `sslrootcert`: a file, or `system`.
    root: Option<String>,
    crl: Option<PathBuf>,
    /// `sslcert` and `sslkey`, unless `sslcertmode=disable`.
    client: Option<(PathBuf, Option<PathBuf>)>,
    sni: bool,
    versions: Versions,
}

impl Options {
    pub fn new(all: &Conninfo) -> Result<Options, ConnInfoError> {
        let path = |key| all.non_empty(key).map(PathBuf::from);
        let no_cert = all
            .get("sslcertmode")
            .is_some_and(|m| m.value.eq_ignore_ascii_case("disable"));
        Ok(Options {
            root: all.non_empty("sslrootcert").map(str::to_string),
            crl: path("sslcrl"),
            client: path("sslcert")
                .filter(|_| !no_cert)
                .map(|cert| (cert, path("sslkey"))),
            // libpq sends SNI only when sslsni is "1" (its default).
            sni: all.get("sslsni").is_none_or(|v| v.value.starts_with('1')),
            versions: versions(all)?,
        })
    }
}

/// What `describe` says about the TLS set-up, for `Target`'s Debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verification {
    None,
    Chain,
    Full,
}

/// A TLS set-up: the connector and what it checks.
pub(crate) struct Tls {
    pub connector: MakeRustlsConnect,
    pub verification: Verification,
    /// The trusted roots (`"/path/root.crt"` or the system's), when verifying.
    pub roots: Option<String>,
}

/// The TLS set-up for `mode`, or `None` for `sslmode=disable`.
pub(crate) fn connector(options: &Options, mode: SslMode) -> Result<Option<Tls>, ConnInfoError> {
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (check, roots) = check(options, mode, &provider)?;
    let verification = match (&check.chain, check.name) {
        (None, _) => Verification::None,
        (Some(_), false) => Verification::Chain,
        (Some(_), true) => Verification::Full,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&options.versions)
        .map_err(|e| tls_error(&format!("TLS set-up failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(check));
    let mut config = match client_cert(options)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error(&format!("client certificate not usable: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = options.sni;
    Ok(Some(Tls {
        connector: MakeRustlsConnect::new(config),
        verification,
        roots,
    }))
}

fn tls_error(message: &str) -> ConnInfoError {
    ConnInfoError::Tls(message.to_string())
}

/// The certificate check for `mode`. A root certificate that exists turns on chain
/// verification for every mode, as in libpq; without one, only the verify modes fail.
fn check(
    options: &Options,
    mode: SslMode,
    provider: &Arc<CryptoProvider>,
) -> Result<(Check, Option<String>), ConnInfoError> {
    let roots = match options.root.as_deref() {
        Some("system") => Some((system_roots()?, "the system's trusted roots".to_string())),
        path => {
            let path = path.map(Path::new);
            match path.filter(|p| p.exists()) {
                Some(path) => Some((file_roots(path)?, format!("\"{}\"", path.display()))),
                None if mode >= SslMode::VerifyCa => return Err(missing_root(path)),
                None => None,
            }
        }
    };
    let mut check = Check {
        algorithms: provider.signature_verification_algorithms,
        chain: None,
        name: mode == SslMode::VerifyFull,
    };
    let Some((roots, named)) = roots else {
        return Ok((check, None));
    };
    let mut builder =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(crl) = options.crl.as_deref().filter(|p| p.exists()) {
        builder = builder.with_crls(read_crls(crl)?);
    }
    let verifier = builder
        .build()
        .map_err(|e| tls_error(&format!("cannot verify server certificates: {e}")))?;
    check.chain = Some(verifier);
    Ok((check, Some(named)))
}

fn missing_root(path: Option<&Path>) -> ConnInfoError {
    let first = match path {
        Some(path) => format!(
            "root certificate file \"{}\" does not exist",
            path.display()
        ),
        None => "could not get home directory to locate root certificate file".to_string(),
    };
    tls_error(&format!(
        "{first}; either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification"
    ))
}

fn system_roots() -> Result<RootCertStore, ConnInfoError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let reason = found
            .errors
            .first()
            .map_or("none found".to_string(), |e| e.to_string());
        return Err(tls_error(&format!(
            "could not load the system's trusted roots: {reason}"
        )));
    }
    Ok(roots)
}

fn file_roots(path: &Path) -> Result<RootCertStore, ConnInfoError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "root certificate")? {
        roots.add(cert).map_err(|e| {
            tls_error(&format!(
                "could not read root certificate file \"{}\": {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ConnInfoError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        tls_error(&format!(
            "could not read {what} file \"{}\": {e}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(unreadable(&"no certificate found"));
    }
    Ok(certs)
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, ConnInfoError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        tls_error(&format!(
            "could not read SSL certificate revocation list file \"{}\": {e}",
            path.display()
        ))
    };
    CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))
}

type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The client certificate and key, if `sslcert` (default `~/.postgresql/postgresql.crt`)
/// exists and `sslcertmode` is not `disable`. A missing certificate is no certificate,
/// as in libpq; a certificate without its key is an error.
fn client_cert(options: &Options) -> Result<Option<ClientCert>, ConnInfoError> {
    let Some((cert, key)) = options.client.as_ref().filter(|(cert, _)| cert.exists()) else {
        return Ok(None);
    };
    let chain = read_certs(cert, "certificate")?;
    let Some(key) = key else {
        return Err(tls_error(
            "certificate present, but no home directory to find its private key",
        ));
    };
    Ok(Some((chain, read_key(key)?)))
}

/// Reads a private key after libpq's checks: a plain file, not readable by group or
/// others (0640 allowed when owned by root).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConnInfoError> {
    let shown = path.display();
    if path.to_string_lossy().contains(':') {
        return Err(tls_error(&format!(
            "private key \"{shown}\" looks like an OpenSSL engine reference, which is not supported"
        )));
    }
    let meta = std::fs::metadata(path).map_err(|_| {
        tls_error(&format!(
            "certificate present, but not private key file \"{shown}\""
        ))
    })?;
    if !meta.is_file() {
        return Err(tls_error(&format!(
            "private key file \"{shown}\" is not a regular file"
        )));
    }
    let mode = meta.permissions().mode();
    let mine = meta.uid() == nix::unistd::geteuid().as_raw();
    if (mine && mode & 0o077 != 0) || (meta.uid() == 0 && mode & 0o037 != 0) {
        return Err(tls_error(&format!(
            "private key file \"{shown}\" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root"
        )));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let encrypted = std::fs::read_to_string(path).is_ok_and(|t| t.contains("ENCRYPTED"));
        let hint = if encrypted {
            " (encrypted keys are not supported)"
        } else {
            ""
        };
        tls_error(&format!(
            "could not load private key file \"{shown}\": {e}{hint}"
        ))
    })
}

/// `ssl_min_protocol_version` (default TLSv1.2, as libpq) and `ssl_max_protocol_version`.
/// rustls speaks TLS 1.2 and 1.3 only.
fn versions(all: &Conninfo) -> Result<Versions, ConnInfoError> {
    let level = |key: &str, default: u8| -> Result<u8, ConnInfoError> {
        match all.non_empty(key) {
            None => Ok(default),
            Some("TLSv1.2") => Ok(2),
            Some("TLSv1.3") => Ok(3),
            Some("TLSv1" | "TLSv1.1") => {
                Err(all.invalid(key, "TLS versions before 1.2 are not supported"))
            }
            Some(_) => Err(all.invalid(key, "expected TLSv1.2 or TLSv1.3")),
        }
    };
    let (min, max) = (
        level("ssl_min_protocol_version", 2)?,
        level("ssl_max_protocol_version", 3)?,
    );
    if min > max {
        return Err(ConnInfoError::Conflict(
            "invalid SSL protocol version range".into(),
        ));
    }
    let all = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)];
    Ok(all
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect())
}
