//! The password file (`.pgpass`), read as libpq's `passwordFromFile` does: lines of
//! `hostname:port:database:username:password`, `*` matching any value of a field,
//! `\:` and `\\` escapes, `#` comment lines, first match wins. A file that group or
//! others can read is ignored with a warning, and so is one that is not a plain file.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One host's password file look-up, made again at every connection as libpq reads
/// the file at every connection attempt (a changed password is picked up on the next
/// reconnect).
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    pub path: PathBuf,
    pub host: String,
    pub port: String,
    pub dbname: String,
    pub user: String,
}

impl Lookup {
    /// Reads the file; a warning is logged the first time this process meets it.
    pub fn find(&self) -> Found {
        let wanted = Wanted {
            host: &self.host,
            port: &self.port,
            dbname: &self.dbname,
            user: &self.user,
        };
        let found = lookup(&self.path, &wanted);
        if let Some(warning) = &found.warning {
            log_once(warning);
        }
        found
    }
}

/// Logs `warning` unless this process already did: a database reconnects often, and
/// one line per file per run is enough.
fn log_once(warning: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(warning.to_string())
    {
        tracing::warn!("{warning}");
    }
}

/// What a password is looked up for. `host` is already mapped the libpq way: a unix
/// socket in the default directory (or no host at all) is `localhost`.
pub(crate) struct Wanted<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The outcome of reading one password file.
#[derive(Default)]
pub(crate) struct Found {
    pub password: Option<String>,
    /// Why the file was not used, in libpq's words; for a WARNING line.
    pub warning: Option<String>,
}

/// Looks `wanted` up in the file at `path`. A missing file is no password and no warning.
pub(crate) fn lookup(path: &Path, wanted: &Wanted<'_>) -> Found {
    let Ok(meta) = std::fs::metadata(path) else {
        return Found::default();
    };
    if !meta.is_file() {
        return warn(format!(
            "password file \"{}\" is not a plain file",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        // libpq's check and wording: a group- or world-readable file is not trusted.
        return warn(format!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            path.display()
        ));
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Found::default();
    };
    Found {
        password: text.lines().find_map(|line| match_line(line, wanted)),
        warning: None,
    }
}

fn warn(message: String) -> Found {
    Found {
        password: None,
        warning: Some(message),
    }
}

/// The password of `line` if its four fields match `wanted`.
pub(crate) fn match_line(line: &str, wanted: &Wanted<'_>) -> Option<String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.starts_with('#') {
        return None;
    }
    let mut rest = line;
    for value in [wanted.host, wanted.port, wanted.dbname, wanted.user] {
        rest = match_field(rest, value)?;
    }
    let password = unescape_password(rest);
    (!password.is_empty()).then_some(password)
}

/// Matches one field against `value`; returns the text after the field's `:`.
fn match_field<'a>(text: &'a str, value: &str) -> Option<&'a str> {
    if let Some(rest) = text.strip_prefix("*:") {
        return Some(rest);
    }
    let mut chars = text.char_indices();
    let mut expected = value.chars();
    while let Some((i, c)) = chars.next() {
        let (c, escaped) = match c {
            '\\' => (chars.next()?.1, true),
            c => (c, false),
        };
        if c == ':' && !escaped {
            return expected.next().is_none().then(|| &text[i + 1..]);
        }
        if expected.next() != Some(c) {
            return None;
        }
    }
    None
}

/// The password field: up to an unescaped `:` or the end, `\x` standing for `x`.
fn unescape_password(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: Wanted<'static> = Wanted {
        host: "db.example",
        port: "5432",
        dbname: "app",
        user: "pgq",
    };

    fn first(text: &str, wanted: &Wanted<'_>) -> Option<String> {
        text.lines().find_map(|line| match_line(line, wanted))
    }

    /// Exact fields and `*` match; the first matching line wins.
    #[test]
    fn first_match_wins() {
        let file = "other:5432:app:pgq:no\ndb.example:*:app:pgq:yes\n*:*:*:*:later\n";
        assert_eq!(first(file, &WANTED).as_deref(), Some("yes"));
        assert_eq!(
            first(
                "*:*:*:*:any",
                &Wanted {
                    host: "x",
                    ..WANTED
                }
            )
            .as_deref(),
            Some("any")
        );
        assert_eq!(first("db.example:5432:app:pgqx:no", &WANTED), None);
        assert_eq!(first("db.example:5432:app:pg:no", &WANTED), None);
    }

    /// `\:` and `\\` escape in every field and in the password; `#` lines are skipped.
    #[test]
    fn escapes_and_comments() {
        let wanted = Wanted {
            host: "/tmp:x",
            port: "5432",
            dbname: r"a\b",
            user: "u",
        };
        assert_eq!(
            first(r"/tmp\:x:5432:a\\b:u:p\:w\\d:ignored", &wanted).as_deref(),
            Some(r"p:w\d")
        );
        assert_eq!(first("# *:*:*:*:commented", &WANTED), None);
        assert_eq!(first("*:*:*:*:pw\r", &WANTED).as_deref(), Some("pw"));
    }

    /// Short or malformed lines match nothing, and `*` is only a whole-field wildcard.
    #[test]
    fn malformed_lines_match_nothing() {
        for line in [
            "",
            "*:*:*",
            "*:*:*:*",
            "*:*:*:*:",
            "db.*:*:*:*:x",
            r"*:*:*:pgq\",
        ] {
            assert_eq!(first(line, &WANTED), None, "{line:?}");
        }
    }

    /// A group-readable file is ignored with libpq's warning; 0600 is used.
    #[test]
    fn permissions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let found = lookup(&path, &WANTED);
        assert_eq!(found.password, None);
        assert!(found.warning.unwrap().contains("has group or world access"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, &WANTED).password.as_deref(), Some("secret"));
        let missing = lookup(&dir.path().join("none"), &WANTED);
        assert!(missing.password.is_none() && missing.warning.is_none());
        let not_file = lookup(dir.path(), &WANTED);
        assert!(not_file.warning.unwrap().contains("not a plain file"));
    }
}
