//! The `postgresql://` URI form, read as libpq's `conninfo_uri_parse_options` does:
//! `postgresql://[user[:password]@][host][:port][,...][/dbname][?param=value&...]`,
//! every part percent-decoded, IPv6 hosts in brackets, several hosts separated by commas.

use crate::error::{ConnInfoError, Origin};
use crate::keys;
use crate::setting::Setting;

const PREFIXES: &[&str] = &["postgresql://", "postgres://"];

/// Whether `text` is a URI rather than key=value pairs.
pub(crate) fn is_uri(text: &str) -> bool {
    PREFIXES.iter().any(|p| text.starts_with(p))
}

/// Reads a URI into the settings it stands for (`user`, `password`, `host`, `port`,
/// `dbname`, then the query parameters), in that order.
pub(crate) fn settings(text: &str) -> Result<Vec<Setting>, ConnInfoError> {
    let rest = PREFIXES
        .iter()
        .find_map(|p| text.strip_prefix(p))
        .ok_or_else(|| syntax("URI must start with postgresql:// or postgres://"))?;
    let mut out = Vec::new();
    let rest = userinfo(rest, &mut out)?;
    let (rest, stop) = hosts(rest, &mut out)?;
    let query = match stop {
        Some('/') => {
            let (db, query) = split_at_char(rest, '?');
            if !db.is_empty() {
                push(&mut out, "dbname", db)?;
            }
            query
        }
        Some('?') => Some(rest),
        _ => None,
    };
    if let Some(query) = query {
        params(query, &mut out)?;
    }
    Ok(out)
}

/// `user[:password]@`, when an `@` comes before the first `/`; returns what follows.
fn userinfo<'a>(text: &'a str, out: &mut Vec<Setting>) -> Result<&'a str, ConnInfoError> {
    let end = text.find(['@', '/']).unwrap_or(text.len());
    if !text[end..].starts_with('@') {
        return Ok(text);
    }
    let (user, password) = split_at_char(&text[..end], ':');
    if !user.is_empty() {
        push(out, "user", user)?;
    }
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        push(out, "password", password)?;
    }
    Ok(&text[end + 1..])
}

/// `host[:port]` items separated by commas. Returns the text after the character that
/// ended the list (`/` or `?`) and that character, if any.
fn hosts<'a>(
    mut text: &'a str,
    out: &mut Vec<Setting>,
) -> Result<(&'a str, Option<char>), ConnInfoError> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    loop {
        let (host, rest) = one_host(text)?;
        hosts.push(host);
        text = rest;
        let mut stop = text.chars().next();
        if stop == Some(':') {
            let end = text[1..]
                .find(['/', '?', ','])
                .map_or(text.len(), |i| i + 1);
            ports.push(&text[1..end]);
            text = &text[end..];
            stop = text.chars().next();
        } else {
            ports.push("");
        }
        let after = stop.map_or(text, |c| &text[c.len_utf8()..]);
        if stop != Some(',') {
            let joined = hosts.join(",");
            if !joined.is_empty() {
                push(out, "host", &joined)?;
            }
            if ports.iter().any(|p| !p.is_empty()) {
                push(out, "port", &ports.join(","))?;
            }
            return Ok((after, stop));
        }
        text = after;
    }
}

/// One host: `[v6 address]` or a name up to `:`, `/`, `?` or `,`.
fn one_host(text: &str) -> Result<(&str, &str), ConnInfoError> {
    let Some(inner) = text.strip_prefix('[') else {
        let end = text.find([':', '/', '?', ',']).unwrap_or(text.len());
        return Ok((&text[..end], &text[end..]));
    };
    let close = inner.find(']').ok_or_else(|| {
        syntax("end of string reached when looking for matching \"]\" in IPv6 host address in URI")
    })?;
    if close == 0 {
        return Err(syntax("IPv6 host address may not be empty in URI"));
    }
    let rest = &inner[close + 1..];
    match rest.chars().next() {
        None | Some(':' | '/' | '?' | ',') => Ok((&inner[..close], rest)),
        Some(c) => Err(syntax(&format!(
            "unexpected character \"{}\" after IPv6 host address in URI (expected \":\" or \"/\")",
            c.escape_debug()
        ))),
    }
}

/// `key=value&...`; `ssl=true` means `sslmode=require`, as in libpq (JDBC habit).
fn params(query: &str, out: &mut Vec<Setting>) -> Result<(), ConnInfoError> {
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = split_at_char(param, '=');
        let key = decode(raw_key, "a URI query parameter name", false)?;
        let Some(raw_value) = raw_value else {
            return Err(syntax(&format!(
                "missing key/value separator \"=\" in URI query parameter: \"{}\"",
                key.escape_debug()
            )));
        };
        if raw_value.contains('=') {
            return Err(syntax(&format!(
                "extra key/value separator \"=\" in URI query parameter: \"{}\"",
                key.escape_debug()
            )));
        }
        let what = format!("URI query parameter \"{}\"", key.escape_debug());
        let value = decode(raw_value, &what, !keys::shows_value(&key))?;
        if key == "ssl" && value == "true" {
            out.push(Setting::new("sslmode", "require", Origin::Conninfo));
        } else {
            out.push(Setting::new(key, value, Origin::Conninfo));
        }
    }
    Ok(())
}

/// Decodes `raw` as the value of `key`.
fn push(out: &mut Vec<Setting>, key: &str, raw: &str) -> Result<(), ConnInfoError> {
    let value = decode(raw, &format!("the URI's {key}"), !keys::shows_value(key))?;
    out.push(Setting::new(key, value, Origin::Conninfo));
    Ok(())
}

/// Percent-decoding; `%00` and invalid UTF-8 are refused. The raw text is shown in
/// errors unless it may be a secret.
fn decode(raw: &str, what: &str, secret: bool) -> Result<String, ConnInfoError> {
    let shown = || {
        if secret {
            what.to_string()
        } else {
            format!("{what}: \"{}\"", raw.escape_debug())
        }
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        let byte = hex
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| syntax(&format!("invalid percent-encoded token in {}", shown())))?;
        if byte == 0 {
            return Err(syntax(&format!(
                "forbidden value %00 in percent-encoded value in {}",
                shown()
            )));
        }
        out.push(byte);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| {
        syntax(&format!(
            "percent-decoded value is not UTF-8 in {}",
            shown()
        ))
    })
}

/// Percent-decoding that never fails (bad escapes kept as written), for masking.
pub(crate) fn decode_lossy(raw: &str) -> String {
    decode(raw, "", true).unwrap_or_else(|_| raw.to_string())
}

/// Splits at the first `sep`: the part before, and the part after if `sep` occurs.
fn split_at_char(text: &str, sep: char) -> (&str, Option<&str>) {
    match text.split_once(sep) {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    }
}

fn syntax(message: &str) -> ConnInfoError {
    ConnInfoError::Syntax(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::owned;

    fn read(text: &str) -> Vec<(String, String)> {
        crate::tests::pairs_of(settings(text).unwrap())
    }

    /// Every part of a full URI lands in its key, percent-decoded.
    #[test]
    fn reads_full_uri() {
        assert_eq!(
            read(
                "postgresql://us%40er:p%3Ass@db.example:5433/my%20db?sslmode=require&application_name=a%2Bb"
            ),
            owned(&[
                ("user", "us@er"),
                ("password", "p:ss"),
                ("host", "db.example"),
                ("port", "5433"),
                ("dbname", "my db"),
                ("sslmode", "require"),
                ("application_name", "a+b"),
            ])
        );
    }

    /// Short forms: no host, a socket directory as host, query only, `ssl=true`.
    #[test]
    fn reads_short_forms() {
        assert_eq!(read("postgresql://"), owned(&[]));
        assert_eq!(read("postgres:///db"), owned(&[("dbname", "db")]));
        assert_eq!(
            read("postgresql://%2Fvar%2Frun%2Fpostgresql"),
            owned(&[("host", "/var/run/postgresql")])
        );
        assert_eq!(
            read("postgresql://?host=/tmp&port=5433&ssl=true"),
            owned(&[("host", "/tmp"), ("port", "5433"), ("sslmode", "require")])
        );
        assert_eq!(
            read("postgresql://u@h"),
            owned(&[("user", "u"), ("host", "h")])
        );
    }

    /// Several hosts, each with or without a port, IPv6 in brackets.
    #[test]
    fn reads_several_hosts() {
        assert_eq!(
            read("postgresql://h1:5433,[::1],h3:5435/db"),
            owned(&[
                ("host", "h1,::1,h3"),
                ("port", "5433,,5435"),
                ("dbname", "db")
            ])
        );
        assert_eq!(
            read("postgresql://[2001:db8::1]:6000"),
            owned(&[("host", "2001:db8::1"), ("port", "6000")])
        );
        assert_eq!(read("postgresql://a,b"), owned(&[("host", "a,b")]));
    }

    /// Malformed URIs are refused with a message saying what is wrong.
    #[test]
    fn refuses_bad_uris() {
        let cases = [
            ("postgresql://[::1", "matching \"]\""),
            ("postgresql://[]/db", "may not be empty"),
            ("postgresql://[::1]x", "unexpected character \"x\""),
            ("postgresql://h/db?sslmode", "missing key/value separator"),
            ("postgresql://h/db?a=b=c", "extra key/value separator"),
            ("postgresql://h/d%zzb", "invalid percent-encoded token"),
            ("postgresql://h/d%00b", "forbidden value %00"),
            ("postgresql://h/d%ffb", "not UTF-8"),
            ("postgresql://h/db?x=%4", "invalid percent-encoded token"),
        ];
        for (uri, expected) in cases {
            let err = settings(uri).unwrap_err().to_string();
            assert!(err.contains(expected), "{uri}: {err}");
        }
    }

    /// A malformed password is reported without its text.
    #[test]
    fn never_echoes_passwords() {
        for uri in [
            "postgresql://u:sec%zzret@h",
            "postgresql://h?password=sec%00ret",
            "postgresql://h?PassWord=sec%zzret",
            "postgresql://h?passwrod=sec%zzret",
        ] {
            let err = settings(uri).unwrap_err().to_string();
            assert!(!err.contains("sec"), "{err}");
            assert!(err.to_lowercase().contains("pass"), "{err}");
        }
    }
}
