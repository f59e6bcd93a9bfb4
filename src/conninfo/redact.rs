//! Masking secrets in connection strings as users wrote them, for logs and `--check`:
//! the values of `password` (and the other secret keys) in key=value form, and in a
//! URI the password of the user info and secret query parameters. Works on text that
//! does not parse, erring on the side of masking too much.

const MASK: &str = "********";
const SECRET_KEYS: &[&str] = &["password", "sslpassword", "oauth_client_secret"];

/// Masks the secrets of a key=value conninfo or a URI.
pub(super) fn redact(text: &str) -> String {
    if let Some(scheme_end) = text.find("://") {
        return redact_uri(text, scheme_end + 3);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_secret_key(rest) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let eq = tail.find('=').map_or(tail.len(), |i| i + 1);
        out.push_str(&tail[..eq]);
        out.push_str(MASK);
        rest = skip_value(tail[eq..].trim_start());
        if !rest.is_empty() {
            out.push(' ');
        }
    }
    out.push_str(rest);
    out
}

/// The byte offset of a secret key (a whole word) followed by `=`.
fn find_secret_key(text: &str) -> Option<usize> {
    SECRET_KEYS
        .iter()
        .filter_map(|key| find_key(text, key))
        .min()
}

fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(key) {
        let at = from + found;
        let before_ok = at == 0 || text.as_bytes()[at - 1].is_ascii_whitespace();
        let after = text[at + key.len()..].trim_start();
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

/// Masks `user:password@`: everything between the first `:` and the last `@`, so
/// that a password holding a raw `/`, `?` or `@` is still masked (a port or query
/// before an `@` is masked too: harmless in a log line). Then secret query parameters.
fn redact_uri(text: &str, start: usize) -> String {
    let mut out = text[..start].to_string();
    let mut rest = &text[start..];
    let userinfo = rest
        .rfind('@')
        .and_then(|at| Some((at, rest[..at].find(':')?)));
    if let Some((at, colon)) = userinfo {
        out.push_str(&rest[..colon + 1]);
        out.push_str(MASK);
        rest = &rest[at..];
    }
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(rest),
    }
    out
}

fn redact_query(query: &str) -> String {
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if SECRET_KEYS.contains(&key) => format!("{key}={MASK}"),
            _ => param.to_string(),
        })
        .collect();
    params.join("&")
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
        assert_eq!(
            redact("sslpassword=a password=b"),
            "sslpassword=******** password=********"
        );
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
