//! `http_web_config`: the Prometheus exporter-toolkit web configuration file
//! (`tls_server_config`, `http_server_config`, `basic_auth_users`), read into typed
//! settings. Unknown fields are refused, naming the field and the file; no message
//! quotes a value of the file (a hash, a password-like typo), only field names.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The most a web config file may weigh: it holds a few paths and hashes.
const MAX_SIZE: u64 = 1024 * 1024;

/// The whole file, as exporter-toolkit documents it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    /// rustls follows the server's order when asked; see [`TlsSettings`].
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Accepted and without effect: the listener speaks HTTP/1.1 only.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
}

/// Which client certificates the listener asks for (exporter-toolkit's names, Go's
/// `tls.ClientAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    /// Asked for, not required, not verified against a CA.
    RequestClientCert,
    /// Required, not verified against a CA.
    RequireAnyClientCert,
    /// Verified against `client_ca_file` when given.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(name: &str) -> Option<ClientAuth> {
        Some(match name {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // The older name exporter-toolkit still accepts.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    /// Whether the certificate is checked against `client_ca_file`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::RequestClientCert => "RequestClientCert",
            ClientAuth::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }
}

/// A TLS protocol version rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(field: &str, name: &str) -> Result<TlsVersion, String> {
        match name {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{field}: {name} is not supported (TLS 1.2 is the oldest version served)"
            )),
            _ => Err(format!("{field}: unknown version (use TLS12 or TLS13)")),
        }
    }
}

/// The TLS part, with paths resolved against the web config's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 suites by Go's names; empty: rustls' defaults. TLS 1.3 suites are
    /// always offered, as in Go.
    pub cipher_suites: Vec<String>,
    pub prefer_server_cipher_suites: bool,
}

/// A typed web config; its `Debug` shows the user names, never their hashes.
#[derive(Clone, PartialEq, Default)]
pub struct WebConfig {
    pub path: PathBuf,
    pub tls: Option<TlsSettings>,
    /// Response headers, names as written.
    pub headers: Vec<(String, String)>,
    /// User name to bcrypt hash.
    pub users: BTreeMap<String, String>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls)
            .field("headers", &self.headers)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a web config was refused: the file and what is wrong, never a value of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = crate::config::escape(&self.path.display().to_string());
        write!(f, "http_web_config \"{path}\": {}", self.reason)
    }
}

impl std::error::Error for WebConfigError {}

/// The headers exporter-toolkit allows, and the values it allows for two of them.
const HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("Content-Security-Policy", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

impl WebConfig {
    /// Reads and checks the file at `path` (not the certificate files: see `tls.rs`).
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let fail = |reason: String| WebConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let text = read(path).map_err(&fail)?;
        WebConfig::parse(&text, path).map_err(fail)
    }

    /// Parses `text`; `path` names the file and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, String> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str::<Option<File>>(text)
                .map_err(|e| unquoted(&e.to_string()))?
                .unwrap_or_default()
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            Some(tls) => tls_settings(tls, dir)?,
            None => None,
        };
        let headers = headers(file.http_server_config.unwrap_or_default().headers)?;
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(format!(
                    "basic_auth_users: the hash of user \"{}\" is not a bcrypt hash",
                    crate::config::escape(user)
                ));
            }
        }
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            headers,
            users,
        })
    }

    /// The files whose change should reload it: itself and the TLS files.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        if let Some(tls) = &self.tls {
            files.extend([tls.cert_file.clone(), tls.key_file.clone()]);
            files.extend(tls.client_ca_file.clone());
        }
        files
    }

    /// One line for logs and `--check`: what is on, without any secret.
    pub fn summary(&self) -> String {
        let tls = match &self.tls {
            None => "TLS off".to_string(),
            Some(tls) => format!("TLS on, client certificates: {}", tls.client_auth.as_str()),
        };
        format!("{tls}, {} basic auth user(s)", self.users.len())
    }
}

fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| crate::config::io_reason(&e))?;
    let mut bytes = Vec::new();
    file.take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::config::io_reason(&e))?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(format!("larger than {MAX_SIZE} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".into())
}

fn tls_settings(tls: TlsFile, dir: &Path) -> Result<Option<TlsSettings>, String> {
    let at = |name: &str| (!name.is_empty()).then(|| dir.join(name));
    let (cert_file, key_file) = match (at(&tls.cert_file), at(&tls.key_file)) {
        (None, None) if tls.client_ca_file.is_empty() && tls.client_auth_type.is_empty() => {
            return Ok(None);
        }
        (Some(cert), Some(key)) => (cert, key),
        (None, _) => return Err("tls_server_config: cert_file is missing".into()),
        (_, None) => return Err("tls_server_config: key_file is missing".into()),
    };
    let client_auth = ClientAuth::parse(&tls.client_auth_type).ok_or_else(|| {
        "tls_server_config.client_auth_type: unknown type (use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)".to_string()
    })?;
    let client_ca_file = at(&tls.client_ca_file);
    if client_auth.verifies() && client_ca_file.is_none() {
        return Err(format!(
            "tls_server_config: client_auth_type {} needs client_ca_file",
            client_auth.as_str()
        ));
    }
    if !client_auth.verifies() && client_ca_file.is_some() {
        return Err("tls_server_config: client_ca_file is set but client_auth_type does not verify client certificates (use RequireAndVerifyClientCert or VerifyClientCertIfGiven)".into());
    }
    let version = |field: &str, value: Option<String>, default| match value {
        None => Ok(default),
        Some(name) => TlsVersion::parse(&format!("tls_server_config.{field}"), &name),
    };
    let min_version = version("min_version", tls.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", tls.max_version, TlsVersion::Tls13)?;
    if min_version > max_version {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        client_ca_file,
        min_version,
        max_version,
        cipher_suites: tls.cipher_suites,
        prefer_server_cipher_suites: tls.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

fn headers(given: BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for (name, value) in given {
        let Some((canonical, allowed)) =
            HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(&name))
        else {
            let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
            return Err(format!(
                "http_server_config.headers: header \"{}\" is not allowed (allowed: {})",
                crate::config::escape(&name),
                names.join(", ")
            ));
        };
        if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
            return Err(format!(
                "http_server_config.headers: {canonical} must be one of {}",
                allowed.join(", ")
            ));
        }
        if hyper::header::HeaderValue::from_str(&value).is_err() {
            return Err(format!(
                "http_server_config.headers: the value of {canonical} is not a valid header value"
            ));
        }
        headers.push((canonical.to_string(), value));
    }
    Ok(headers)
}

/// A YAML error message with every double-quoted part replaced by `"..."`: serde
/// quotes a refused value (`invalid type: string "..."`), which may be a hash or a
/// password written in the wrong place. Field names are in backquotes and stay.
pub(super) fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    out.push_str(parts.next().unwrap_or_default());
    let mut inside = true;
    for part in parts {
        if inside {
            out.push_str("\"...\"");
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    crate::config::escape(&out)
}

#[cfg(test)]
#[path = "web_config_tests.rs"]
mod tests;
