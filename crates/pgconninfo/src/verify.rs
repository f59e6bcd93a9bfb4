//! How the server's certificate is checked, as libpq does at each level:
//! not at all (`require` without a root certificate), the chain only (`verify-ca`, and
//! `require`/`prefer`/`allow` when a root certificate is present, as libpq does), or the
//! chain and the host name (`verify-full`, with libpq's fallback to the subject's
//! common name when the certificate has no DNS subjectAltName).
//!
//! Handshake signatures are always verified, so even an unverified connection is
//! encrypted to whoever holds the certificate's key.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// How much of the certificate is checked.
#[derive(Debug)]
pub(crate) struct Check {
    /// The handshake signature algorithms, always checked.
    pub algorithms: WebPkiSupportedAlgorithms,
    /// The chain up to a trusted root, when there is a root certificate.
    pub chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the host name is checked too (`verify-full`).
    pub name: bool,
}

fn is_name_mismatch(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

impl ServerCertVerifier for Check {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // The name check comes last in rustls, so the chain was good.
            Err(e)
                if is_name_mismatch(&e)
                    && (!self.name || common_name_matches(end_entity, server_name)) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    // The same checks as WebPkiServerVerifier's, with the provider's algorithms.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// libpq's fallback: a certificate without any DNS subjectAltName is matched on its
/// subject common name (case-insensitive, a leading `*.` matching one label).
fn common_name_matches(cert: &CertificateDer<'_>, server_name: &ServerName<'_>) -> bool {
    use x509_cert::der::Decode;
    let Ok(cert) = x509_cert::Certificate::from_der(cert) else {
        return false;
    };
    let tbs = &cert.tbs_certificate;
    if has_dns_alt_name(tbs) {
        return false;
    }
    let wanted = server_name.to_str();
    common_names(tbs).iter().any(|cn| name_matches(cn, &wanted))
}

fn has_dns_alt_name(tbs: &x509_cert::TbsCertificate) -> bool {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let oid = x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
    tbs.extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == oid)
        .any(|e| {
            SubjectAltName::from_der(e.extn_value.as_bytes())
                .is_ok_and(|san| san.0.iter().any(|n| matches!(n, GeneralName::DnsName(_))))
        })
}

fn common_names(tbs: &x509_cert::TbsCertificate) -> Vec<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    let oid = x509_cert::der::oid::db::rfc4519::CN;
    let attributes = tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter());
    attributes
        .filter(|a| a.oid == oid)
        .filter_map(|a| {
            let v = &a.value;
            (v.decode_as::<Utf8StringRef<'_>>().map(|s| s.to_string()))
                .or_else(|_| {
                    v.decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .or_else(|_| v.decode_as::<Ia5StringRef<'_>>().map(|s| s.to_string()))
                .ok()
        })
        .collect()
}

/// libpq's `wildcard_certificate_match`: `*.example.com` matches `db.example.com`
/// but neither `example.com` nor `a.b.example.com`.
fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    let Some(label_end) = name.find('.') else {
        return false;
    };
    suffix.starts_with('.')
        && name.len() > suffix.len()
        && name[label_end..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    /// Self-signed, subject `CN=*.example.com`, no subjectAltName.
    const CN_ONLY: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBiDCCAS2gAwIBAgIUCR7NurZkO7Ka24z5eqOs4QcmiR8wCgYIKoZIzj0EAwIw\n",
        "GDEWMBQGA1UEAwwNKi5leGFtcGxlLmNvbTAgFw0yNjExMjUwOTQyNTNaGA8yMTI2\n",
        "MTEwMTA5NDI1M1owGDEWMBQGA1UEAwwNKi5leGFtcGxlLmNvbTBZMBMGByqGSM49\n",
        "AgEGCCqGSM49AwEHA0IABOhTRM20i3MlOQW6tJbmAH1Au93nXXK3V0jgcKqM52Gw\n",
        "ctgSBEvvkSz8RTDKyXJ24rXSyucFS6XKb8JZQ1OfogejUzBRMB0GA1UdDgQWBBTy\n",
        "ZCeqCWJr8eDmy8U0RbRg1XJxajAfBgNVHSMEGDAWgBTyZCeqCWJr8eDmy8U0RbRg\n",
        "1XJxajAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQD6kInPUch3\n",
        "fJpBfqihf3OmfAFdtVkS7w9Nu24b0SptnwIhAPayhWT3sdRtMZ4g7N+0WwNabKJ/\n",
        "q3kVRlJnKGTK12Pe\n",
        "-----END CERTIFICATE-----\n",
    );
    /// Self-signed, subject `CN=db.example.com`, subjectAltName `DNS:other.example.com`.
    const WITH_SAN: &str = concat!(
        "-----BEGIN CERTIFICATE-----\n",
        "MIIBqDCCAU2gAwIBAgIUeNBSjTVg5B2pehQr8N/yxtGrrCQwCgYIKoZIzj0EAwIw\n",
        "GTEXMBUGA1UEAwwOZGIuZXhhbXBsZS5jb20wIBcNMjYxMTI1MDk0MjUzWhgPMjEy\n",
        "NjExMDEwOTQyNTNaMBkxFzAVBgNVBAMMDmRiLmV4YW1wbGUuY29tMFkwEwYHKoZI\n",
        "zj0CAQYIKoZIzj0DAQcDQgAEoUCS8DyQ8Vfjn90PR952va8I8PgGBp/ubx2yFK+U\n",
        "f5lGi+Aoi0dov4erkVwQBpmL0xlI99WnDhBk6y1fBHLptaNxMG8wHQYDVR0OBBYE\n",
        "FOdBYqggRHWpxtiFd2F0pYXrfhAhMB8GA1UdIwQYMBaAFOdBYqggRHWpxtiFd2F0\n",
        "pYXrfhAhMA8GA1UdEwEB/wQFMAMBAf8wHAYDVR0RBBUwE4IRb3RoZXIuZXhhbXBs\n",
        "ZS5jb20wCgYIKoZIzj0EAwIDSQAwRgIhAIC/dC+6m21rXWU2QZGYu19Lr4VIf3M1\n",
        "Yp5mPxNlW+nlAiEA+Cx+pOzVugnIhRwSsSkZg1cvmnneI+QhoOLbQRh+fS8=\n",
        "-----END CERTIFICATE-----\n",
    );

    fn matches(pem: &str, name: &str) -> bool {
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        common_name_matches(&cert, &ServerName::try_from(name.to_string()).unwrap())
    }

    /// The common name is used only when there is no DNS subjectAltName, as in libpq.
    #[test]
    fn common_name_fallback() {
        assert!(matches(CN_ONLY, "db.example.com"));
        assert!(!matches(CN_ONLY, "example.com"));
        assert!(!matches(WITH_SAN, "db.example.com"));
    }

    /// Common-name matching follows libpq: exact (any case) or one wildcard label.
    #[test]
    fn common_name_matching() {
        assert!(name_matches("DB.example.com", "db.example.COM"));
        assert!(name_matches("*.example.com", "db.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("db.example.com", "other.example.com"));
    }
}
