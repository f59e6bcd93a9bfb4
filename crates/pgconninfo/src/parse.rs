//! The `key=value` form of a connection string, read as libpq's `conninfo_parse` does:
//! blanks between pairs, optional blanks around `=`, single-quoted values, and a
//! backslash escaping the next character inside or outside quotes.

use std::ops::Range;

use crate::error::{ConnInfoError, Origin};
use crate::keys;
use crate::setting::Setting;

/// What [`read`] found: each setting with the byte range of its value's text (from
/// just after the `=`), and, when the text is malformed, the error and the offset of
/// the pair it stopped at.
pub(crate) struct Read {
    pub settings: Vec<(Setting, Range<usize>)>,
    pub failed: Option<(ConnInfoError, usize)>,
}

impl Read {
    /// The settings in order, or the error where the text stopped being well-formed.
    pub fn into_settings(self) -> Result<Vec<Setting>, ConnInfoError> {
        match self.failed {
            Some((error, _)) => Err(error),
            None => Ok(self.settings.into_iter().map(|(s, _)| s).collect()),
        }
    }

    /// The same, with every offset moved `by` bytes: for text read from a slice that
    /// starts `by` bytes into the text the offsets should refer to.
    pub fn shifted(mut self, by: usize) -> Read {
        for (_, range) in &mut self.settings {
            *range = range.start + by..range.end + by;
        }
        if let Some((_, at)) = &mut self.failed {
            *at += by;
        }
        self
    }
}

/// Reads as far as the text is well-formed.
pub(crate) fn read(text: &str) -> Read {
    let mut chars = text.char_indices().peekable();
    let mut settings: Vec<(Setting, Range<usize>)> = Vec::new();
    loop {
        skip_blanks(&mut chars);
        let Some(&(start, _)) = chars.peek() else {
            return Read {
                settings,
                failed: None,
            };
        };
        let key = read_key(&mut chars);
        skip_blanks(&mut chars);
        let value = match chars.next() {
            Some((at, '=')) => read_value(&mut chars, at + 1, text.len()),
            _ => Err(missing_equals(&key, settings.last().map(|(s, _)| s))),
        };
        match value {
            Ok((value, range)) => {
                settings.push((Setting::new(key, value, Origin::Conninfo), range))
            }
            Err(error) => {
                return Read {
                    settings,
                    failed: Some((error, start)),
                };
            }
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

fn skip_blanks(chars: &mut Chars<'_>) {
    while chars.next_if(|(_, c)| c.is_ascii_whitespace()).is_some() {}
}

/// A key ends at `=` or a blank.
fn read_key(chars: &mut Chars<'_>) -> String {
    let mut key = String::new();
    while let Some((_, c)) = chars.next_if(|&(_, c)| c != '=' && !c.is_ascii_whitespace()) {
        key.push(c);
    }
    key
}

/// A value after blanks: quoted (ends at an unescaped `'`) or bare (ends at a blank);
/// `\x` stands for `x` in both. Returns it with the range from `start` to its end.
fn read_value(
    chars: &mut Chars<'_>,
    start: usize,
    len: usize,
) -> Result<(String, Range<usize>), ConnInfoError> {
    skip_blanks(chars);
    let quoted = chars.next_if(|&(_, c)| c == '\'').is_some();
    let mut value = String::new();
    while let Some((at, c)) = chars.next_if(|&(_, c)| quoted || !c.is_ascii_whitespace()) {
        match c {
            '\'' if quoted => return Ok((value, start..at + 1)),
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            c => value.push(c),
        }
    }
    let end = chars.peek().map_or(len, |&(at, _)| at);
    match quoted {
        true => Err(ConnInfoError::Syntax(
            "unterminated quoted string in connection info string".into(),
        )),
        false => Ok((value, start..end)),
    }
}

/// libpq's message, except that nothing that may be secret is echoed: a word following
/// a value that may be secret (in `password=two words` the second word is part of the
/// password), and any word that is not a connection option's name (a URI pasted with
/// a quote in front, `'postgresql://user:secret@...`, is read as such words).
fn missing_equals(key: &str, previous: Option<&Setting>) -> ConnInfoError {
    if let Some(previous) = previous.filter(|p| !keys::shows_value(&p.key)) {
        let after = match keys::lookup(&previous.key) {
            Some(_) => format!("the word following \"{}\"", previous.key.escape_debug()),
            None => "a word that is no connection option".to_string(),
        };
        return ConnInfoError::Syntax(format!(
            "missing \"=\" after {after} in connection info string (quote values that contain blanks)"
        ));
    }
    let word = match keys::lookup(key) {
        Some(_) => format!("\"{}\"", key.escape_debug()),
        None => "a word that is no connection option".to_string(),
    };
    ConnInfoError::Syntax(format!(
        "missing \"=\" after {word} in connection info string"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::owned;

    fn settings(text: &str) -> Result<Vec<Setting>, ConnInfoError> {
        read(text).into_settings()
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        crate::tests::pairs_of(settings(text).unwrap())
    }

    /// Blanks around `=` and between pairs are skipped; an empty string has no pairs.
    #[test]
    fn reads_plain_pairs() {
        assert_eq!(
            pairs("  host=a  port = 5433\tuser=\n u "),
            owned(&[("host", "a"), ("port", "5433"), ("user", "u")])
        );
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs("host="), owned(&[("host", "")]));
    }

    /// Quotes keep blanks; backslash escapes quotes and itself, inside and outside quotes.
    #[test]
    fn reads_quotes_and_escapes() {
        assert_eq!(
            pairs(r"password='it\'s a \\secret' options=-c\ x=1"),
            owned(&[("password", r"it's a \secret"), ("options", "-c x=1")])
        );
        assert_eq!(
            pairs("host='' user=' a b '"),
            owned(&[("host", ""), ("user", " a b ")])
        );
        assert_eq!(pairs(r"dbname=a\\b\"), owned(&[("dbname", r"a\b")]));
        assert_eq!(pairs("a='x'b=y"), owned(&[("a", "x"), ("b", "y")]));
    }

    /// Bad inputs are refused with libpq's messages.
    #[test]
    fn refuses_bad_syntax() {
        let err = settings("host").unwrap_err().to_string();
        assert!(err.contains("missing \"=\" after \"host\""), "{err}");
        let err = settings("host x=1").unwrap_err().to_string();
        assert!(err.contains("missing \"=\" after \"host\""), "{err}");
        let err = settings("user='abc").unwrap_err().to_string();
        assert!(err.contains("unterminated quoted string"), "{err}");
    }

    /// A word that is no option's name is not echoed: a URI with a quote in front
    /// reads as words, and its user info holds the password.
    #[test]
    fn never_echoes_unknown_words() {
        let secret = "Pwuh8OPj5bXDYH";
        for text in [
            format!("'postgresql://user:{secret}@application_name='a b'/db?x sslmode=verify-full"),
            format!("postgresql://user:{secret}@host"),
            format!("user:{secret} host=x"),
        ] {
            let err = settings(&text).unwrap_err().to_string();
            assert!(!err.contains(secret), "{err}");
        }
    }

    /// A word after an unquoted password (or a value of a key named like one) is not
    /// echoed in the error.
    #[test]
    fn never_echoes_password_words() {
        let err = settings("password=hunter 2pac").unwrap_err().to_string();
        assert!(!err.contains("2pac"), "{err}");
        let err = settings("password='hunter2").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!format!("{:?}", settings("password=x1y2").unwrap()).contains("x1y2"));
        let err = settings("PassWord=hunter 2pac").unwrap_err().to_string();
        assert!(!err.contains("2pac"), "{err}");
    }

    /// Value ranges cover the text after `=`; a malformed pair is located.
    #[test]
    fn locates_values_and_failures() {
        let text = "host = 'a b' port=1 user";
        let read = read(text);
        let ranges: Vec<&str> = read
            .settings
            .iter()
            .map(|(_, r)| &text[r.clone()])
            .collect();
        assert_eq!(ranges, [" 'a b'", "1"]);
        assert_eq!(read.failed.map(|(_, at)| at), Some(20));
    }
}
