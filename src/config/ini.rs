//! The pgqd.ini reader: pgqd 3.5's line grammar (libusual's cfparser), not a generic INI.
//!
//! Rules kept from pgqd 3.5: `#`/`;` start comment lines only (no inline comments);
//! keys are `[A-Za-z0-9_.*-]+` or any text in single quotes; values run to the end of
//! the line, trailing blanks dropped, no unquoting and no escapes; `%include FILE`
//! (relative to the working directory, as pgqd does) nests at most 10 deep; section
//! and key names are case-sensitive. Unlike pgqd 3.5, each file must be a regular file
//! of at most 1 MiB (`source.rs`), so `%include /dev/zero` fails at once. rust-ini was not used: its defaults (escapes,
//! inline comments, no `%include`) differ on every one of these points.

use std::path::{Path, PathBuf};

use super::value::Raw;
use super::{ConfigError, Entry, Origin};

/// The only section pgqd knows.
pub const SECTION: &str = "pgqd";
/// pgqd's include nesting limit.
const MAX_INCLUDE_DEPTH: usize = 10;

/// Reads `path` (and what it includes) into raw entries in file order.
pub fn read(path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let mut reader = Reader {
        entries: Vec::new(),
        section: None,
    };
    reader.file(path, 0)?;
    Ok(reader.entries)
}

/// Parses ini text already in memory; `path` is only used in messages.
#[cfg(test)]
pub fn parse(text: &str, path: &Path) -> Result<Vec<Entry>, ConfigError> {
    let mut reader = Reader {
        entries: Vec::new(),
        section: None,
    };
    reader.text(text, path, 0)?;
    Ok(reader.entries)
}

struct Reader {
    entries: Vec<Entry>,
    /// The current section, which carries over into included files as in libusual.
    section: Option<String>,
}

impl Reader {
    fn file(&mut self, path: &Path, depth: usize) -> Result<(), ConfigError> {
        let text = super::source::read(path).map_err(|reason| ConfigError::Read {
            path: path.to_path_buf(),
            reason,
        })?;
        let text = String::from_utf8_lossy(&text);
        self.text(&text, path, depth)
    }

    fn text(&mut self, text: &str, path: &Path, depth: usize) -> Result<(), ConfigError> {
        for (index, raw) in text.lines().enumerate() {
            let origin = Origin::File {
                file: path.to_path_buf(),
                line: index + 1,
            };
            self.line(raw, origin, depth)?;
        }
        Ok(())
    }

    fn line(&mut self, raw: &str, origin: Origin, depth: usize) -> Result<(), ConfigError> {
        let line = raw.trim_start_matches(is_blank);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix('[') {
            return self.section(rest, origin);
        }
        if let Some(rest) = line.strip_prefix("%include") {
            return self.include(rest, origin, depth);
        }
        let (key, value) = split_key_value(line).ok_or_else(|| syntax(&origin))?;
        match &self.section {
            Some(section) if section == SECTION => {
                self.entries.push(Entry {
                    key,
                    value: Raw::Text(value.to_string()),
                    origin,
                });
                Ok(())
            }
            Some(_) => Ok(()), // unreachable: unknown sections are rejected when opened
            None => Err(ConfigError::NoSection { key, origin }),
        }
    }

    fn section(&mut self, rest: &str, origin: Origin) -> Result<(), ConfigError> {
        let (name, tail) = rest.split_once(']').ok_or_else(|| syntax(&origin))?;
        if !tail.trim_matches(is_blank).is_empty() {
            return Err(syntax(&origin));
        }
        if name != SECTION {
            return Err(ConfigError::UnknownSection {
                name: name.to_string(),
                origin,
            });
        }
        self.section = Some(name.to_string());
        Ok(())
    }

    fn include(&mut self, rest: &str, origin: Origin, depth: usize) -> Result<(), ConfigError> {
        let target = rest.trim_matches(is_blank);
        if target.is_empty() || !rest.starts_with(is_blank) {
            return Err(syntax(&origin));
        }
        if depth + 1 >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::IncludeDepth { origin });
        }
        let target =
            PathBuf::from(
                super::expand_home(target).map_err(|reason| ConfigError::Include {
                    origin: origin.clone(),
                    source: Box::new(reason),
                })?,
            );
        self.file(&target, depth + 1)
            .map_err(|source| ConfigError::Include {
                origin,
                source: Box::new(source),
            })
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

fn syntax(origin: &Origin) -> ConfigError {
    ConfigError::Syntax {
        origin: origin.clone(),
    }
}

/// Splits `key = value` with pgqd's key grammar; `None` is a syntax error.
fn split_key_value(line: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(quoted) = line.strip_prefix('\'') {
        let (key, rest) = quoted.split_once('\'')?;
        (key.to_string(), rest)
    } else {
        let end = line.find(|c: char| !is_key_char(c)).unwrap_or(line.len());
        (line[..end].to_string(), &line[end..])
    };
    if key.is_empty() {
        return None;
    }
    let value = rest.trim_start_matches(is_blank).strip_prefix('=')?;
    Some((key, value.trim_matches(is_blank)))
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, usize)> {
        parse(text, Path::new("t.ini"))
            .unwrap()
            .into_iter()
            .map(|e| match (e.value, e.origin) {
                (Raw::Text(value), Origin::File { line, .. }) => (e.key, value, line),
                other => panic!("not an ini entry: {other:?}"),
            })
            .collect()
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("t.ini")).unwrap_err().to_string()
    }

    /// Comment lines start with `#` or `;` after blanks; blank lines are skipped.
    #[test]
    fn comment_lines() {
        let got = entries("# c\n  ; c\n\n[pgqd]\n\t# x = y\nlogfile = a\n");
        assert_eq!(got, vec![("logfile".into(), "a".into(), 6)]);
    }

    /// There are no inline comments: the text after the value is part of it.
    #[test]
    fn no_inline_comments() {
        let got = entries("[pgqd]\ndatabase_list = db1  # my db\n");
        assert_eq!(got[0].1, "db1  # my db");
    }

    /// Blanks around `=` and at the end are dropped; quotes and backslashes are kept.
    #[test]
    fn values_are_literal() {
        let got = entries("[pgqd]\nbase_connstr   =   'host=a' \\n \t\r\n");
        assert_eq!(got[0].1, "'host=a' \\n");
    }

    /// An empty value is allowed.
    #[test]
    fn empty_value() {
        assert_eq!(entries("[pgqd]\nlogfile =\n")[0].1, "");
    }

    /// Keys may be quoted, and then hold any text.
    #[test]
    fn quoted_keys() {
        let got = entries("[pgqd]\n'ticker_period' = 2\n'a b#c' = 3\n");
        assert_eq!(got[0].0, "ticker_period");
        assert_eq!(got[1].0, "a b#c");
    }

    /// Keys use pgqd's character set; anything else is a syntax error with file:line.
    #[test]
    fn key_grammar() {
        assert_eq!(entries("[pgqd]\na.b*c-d_9 = x\n")[0].0, "a.b*c-d_9");
        assert_eq!(
            error("[pgqd]\nfoo bar = 1\n"),
            "syntax error in configuration (t.ini:2)"
        );
        assert_eq!(
            error("[pgqd]\njust words\n"),
            "syntax error in configuration (t.ini:2)"
        );
        assert_eq!(
            error("[pgqd]\n= 1\n"),
            "syntax error in configuration (t.ini:2)"
        );
    }

    /// Section names are case-sensitive and only `[pgqd]` exists, as in pgqd 3.5.
    #[test]
    fn unknown_section() {
        assert_eq!(
            error("[PGQD]\nticker_period = 2\n"),
            "invalid section \"PGQD\" in configuration (t.ini:1)"
        );
        assert_eq!(error("[pgqd\n"), "syntax error in configuration (t.ini:1)");
    }

    /// A key before any section is an error naming the key.
    #[test]
    fn value_without_section() {
        assert_eq!(
            error("foo = 1\n"),
            "value without section: foo in configuration (t.ini:1)"
        );
    }

    /// `%include` reads another file at that point, relative to the working directory.
    #[test]
    fn include() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("inc.ini");
        std::fs::write(&inc, "stats_period = 5\n").unwrap();
        let main = format!("[pgqd]\n%include {}\nlogfile = x\n", inc.display());
        let got = entries(&main);
        assert_eq!(got[0], ("stats_period".into(), "5".into(), 1));
        assert_eq!(got[1], ("logfile".into(), "x".into(), 3));
    }

    /// An error inside an included file names that file and the include line.
    #[test]
    fn include_errors() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("inc.ini");
        std::fs::write(&inc, "\n[other]\n").unwrap();
        let main = format!("[pgqd]\n%include {}\n", inc.display());
        let message = error(&main);
        assert!(message.starts_with("error processing include file in configuration (t.ini:2): invalid section \"other\""), "{message}");
        assert!(message.contains("inc.ini:2)"), "{message}");
        let missing = error("[pgqd]\n%include /nonexistent/x.ini\n");
        assert!(message.contains("(t.ini:2)"));
        assert!(
            missing
                .contains("could not load file \"/nonexistent/x.ini\": No such file or directory"),
            "{missing}"
        );
    }

    /// A file that includes itself stops at the nesting limit instead of recursing forever.
    #[test]
    fn include_depth_limit() {
        let dir = tempfile::tempdir().unwrap();
        let me = dir.path().join("loop.ini");
        std::fs::write(&me, format!("[pgqd]\n%include {}\n", me.display())).unwrap();
        let message = read(&me).unwrap_err().to_string();
        assert!(message.contains("include nesting too deep"), "{message}");
    }

    /// A missing file is reported as pgqd does.
    #[test]
    fn missing_file() {
        let message = read(Path::new("missing.ini")).unwrap_err().to_string();
        assert_eq!(
            message,
            "could not load file \"missing.ini\": No such file or directory"
        );
    }
}
