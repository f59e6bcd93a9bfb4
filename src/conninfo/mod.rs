//! Connection strings: `base_connstr` as a type that never shows its password, and
//! the translation of `base_connstr` plus a database name into a connection.

mod connect;

use std::fmt;

pub use connect::{Canceller, ConnInfoError, ConnectError, Connected, Defaults, Target, resolve};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `base_connstr` as written in the config. `Display`, `Debug` and `Serialize` mask
/// any password, so it can go into logs and `--check` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnStr(String);

impl ConnStr {
    pub fn new(text: impl Into<String>) -> Self {
        ConnStr(text.into())
    }

    /// The real text, password included: only for building connections.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnStr({:?})", redact(&self.0))
    }
}

impl Serialize for ConnStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.0))
    }
}

impl<'de> Deserialize<'de> for ConnStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ConnStr)
    }
}

/// A PostgreSQL error as one line: `SQLSTATE: message` when the server sent one,
/// else the client-side reason (connection refused, closed, timed out...).
pub fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Masks the password of a key=value conninfo or a URI.
pub fn redact(text: &str) -> String {
    if text.contains("://") {
        return redact_uri(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_password_key(rest) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let eq = tail.find('=').map_or(tail.len(), |i| i + 1);
        out.push_str(&tail[..eq]);
        out.push_str("********");
        rest = skip_value(tail[eq..].trim_start());
        if !rest.is_empty() {
            out.push(' ');
        }
    }
    out.push_str(rest);
    out
}

/// The byte offset of a `password` key (not part of a longer word) followed by `=`.
fn find_password_key(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find("password") {
        let at = from + found;
        let before_ok = at == 0 || text.as_bytes()[at - 1].is_ascii_whitespace();
        let after = text[at + "password".len()..].trim_start();
        if before_ok && after.starts_with('=') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Skips one conninfo value (quoted with backslash escapes, or up to a blank).
fn skip_value(text: &str) -> &str {
    let mut chars = text.char_indices();
    if text.starts_with('\'') {
        chars.next();
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '\'') => return text[i + 1..].trim_start(),
                _ => {}
            }
        }
        return "";
    }
    let mut escaped = false;
    for (i, c) in chars {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, c) if c.is_whitespace() => return text[i..].trim_start(),
            _ => {}
        }
    }
    ""
}

fn redact_uri(text: &str) -> String {
    let scheme_end = text.find("://").map_or(0, |i| i + 3);
    let authority_end = text[scheme_end..]
        .find(['/', '?'])
        .map_or(text.len(), |i| scheme_end + i);
    let authority = &text[scheme_end..authority_end];
    let mut out = text[..scheme_end].to_string();
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            out.push_str(&authority[..colon + 1]);
            out.push_str("********");
            out.push_str(&authority[at..]);
        }
        _ => out.push_str(authority),
    }
    let query = &text[authority_end..];
    out.push_str(&redact_query(query));
    out
}

fn redact_query(text: &str) -> String {
    let Some((path, query)) = text.split_once('?') else {
        return text.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some(("password", _)) => "password=********".to_string(),
            _ => param.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords in key=value form are masked, quoted or not, other keys kept.
    #[test]
    fn redacts_key_value() {
        assert_eq!(
            redact("host=a password=secret user=b"),
            "host=a password=******** user=b"
        );
        assert_eq!(
            redact("password = 'se cr\\'et' port=1"),
            "password =******** port=1"
        );
        assert_eq!(redact("mypassword=x"), "mypassword=x");
        assert_eq!(redact("password=s3"), "password=********");
    }

    /// URI passwords are masked in the authority and in the query.
    #[test]
    fn redacts_uri() {
        assert_eq!(
            redact("postgresql://u:secret@h:5432/db"),
            "postgresql://u:********@h:5432/db"
        );
        assert_eq!(
            redact("postgres://h/db?password=x&sslmode=require"),
            "postgres://h/db?password=********&sslmode=require"
        );
        assert_eq!(redact("postgres://u@h"), "postgres://u@h");
    }

    /// Neither Display nor Debug shows the password.
    #[test]
    fn conn_str_never_shows_password() {
        let c = ConnStr::new("host=x password=hunter2");
        assert!(!format!("{c} {c:?}").contains("hunter2"));
        assert_eq!(c.expose(), "host=x password=hunter2");
    }
}
