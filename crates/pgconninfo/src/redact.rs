//! Masking connection strings as users wrote them, for logs, errors and config displays.
//! A value is shown only when its key is a known, non-secret libpq option
//! ([`keys::shows_value`]): secrets and values of unknown (maybe misspelt) keys are
//! masked. In key=value form the text is read by the parser itself and whatever
//! follows a malformed pair is masked; in a URI the password of the user info and
//! the masked query parameters. Errs on the side of masking too much.

use crate::keys;
use crate::parse;
use crate::read::{Read, read};
use crate::uri;

const MASK: &str = "********";

/// Masks the secrets of a key=value conninfo or a URI.
pub(crate) fn redact(text: &str) -> String {
    match read(text) {
        Read::Pairs(pairs) => redact_pairs(text, pairs),
        Read::Uri(_) => redact_uri(text),
    }
}

/// Masks the values of `read` (key=value text) that may not be shown, and everything
/// from a malformed pair on.
fn redact_pairs(text: &str, read: parse::Read) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (setting, range) in read.settings {
        if !keys::shows_value(&setting.key) {
            out.push_str(&text[from..range.start]);
            out.push_str(MASK);
            from = range.end;
        }
    }
    match read.failed {
        Some((_, at)) => {
            out.push_str(&text[from..at]);
            out.push_str(MASK);
        }
        None => out.push_str(&text[from..]),
    }
    out
}

/// Masks `user:password@`: everything between the first `:` and the last `@`, so
/// that a password holding a raw `/`, `?` or `@` is still masked (a port or query
/// before an `@` is masked too: harmless in a log line). Then the query parameters,
/// in what is left (a `?` inside the masked part is gone with it).
fn redact_uri(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[start..];
    let userinfo = rest
        .rfind('@')
        .and_then(|at| Some((at, rest[..at].find(':')?)));
    let text = match userinfo {
        Some((at, colon)) => format!("{}{MASK}{}", &text[..start + colon + 1], &rest[at..]),
        None => text.to_string(),
    };
    let Some((path, query)) = text.split_once('?') else {
        return text;
    };
    let params: Vec<String> = (query.split('&'))
        .map(|param| match param.split_once('=') {
            Some((key, _)) if !keys::shows_value(&uri::decode_lossy(key)) => {
                format!("{key}={MASK}")
            }
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
        assert_eq!(redact("password=s3"), "password=********");
        assert_eq!(
            redact("sslpassword=a password=b"),
            "sslpassword=******** password=********"
        );
    }

    /// Every secret key, keys named like one in any case, and unknown keys are masked;
    /// after a malformed pair nothing is shown.
    #[test]
    fn redacts_every_secret_and_unknown_key() {
        for key in keys::SECRET_KEYS
            .iter()
            .chain(&["PASSWORD", "mypassword", "pasword"])
        {
            assert_eq!(
                redact(&format!("host=/x {key}=S3cretZz")),
                format!("host=/x {key}=********")
            );
        }
        assert_eq!(
            redact("password=abc S3cretZz port=1"),
            "password=******** ********"
        );
        assert_eq!(redact("host='x"), "********");
    }

    /// URI passwords are masked in the user info and in the query.
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
        assert_eq!(redact("postgres://h:5432,h2/db"), "postgres://h:5432,h2/db");
        assert_eq!(
            redact("postgres://h/db?password=x&application_name=a@b"),
            "postgres://h/db?password=********&application_name=a@b"
        );
        assert_eq!(
            redact("postgres://h?PASSWORD=x&pass%77ord=y&scram_client_key=z"),
            "postgres://h?PASSWORD=********&pass%77ord=********&scram_client_key=********"
        );
        assert_eq!(
            redact("postgres:///?password=x:@"),
            "postgres:///?password=********"
        );
    }

    /// A password holding raw `/`, `?` or `@` is masked all the same.
    #[test]
    fn redacts_awkward_uri_passwords() {
        for uri in [
            "postgresql://u:pa/ss@h/db",
            "postgresql://u:pa@ss@h/db",
            "postgresql://u:pa?ss@h/db",
        ] {
            let masked = redact(uri);
            assert!(
                !masked.contains("pa") && !masked.contains("ss@"),
                "{masked}"
            );
        }
    }
}
