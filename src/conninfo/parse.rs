//! The `key=value` form of a connection string, read as libpq's `conninfo_parse` does:
//! blanks between pairs, optional blanks around `=`, single-quoted values, and a
//! backslash escaping the next character inside or outside quotes.

use super::error::ConnInfoError;
use super::keys;

/// One `key=value` pair, value unescaped.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Pair {
    pub key: String,
    pub value: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if keys::is_secret(&self.key) {
            write!(f, "{}=********", self.key)
        } else {
            write!(f, "{}={:?}", self.key, self.value)
        }
    }
}

/// Reads a key=value connection string into its pairs, in order.
pub(super) fn key_values(text: &str) -> Result<Vec<Pair>, ConnInfoError> {
    let mut chars = text.chars().peekable();
    let mut pairs: Vec<Pair> = Vec::new();
    loop {
        skip_blanks(&mut chars);
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key = read_key(&mut chars);
        skip_blanks(&mut chars);
        if chars.next() != Some('=') {
            return Err(missing_equals(&key, pairs.last()));
        }
        skip_blanks(&mut chars);
        let value = if chars.peek() == Some(&'\'') {
            chars.next();
            read_quoted(&mut chars)?
        } else {
            read_bare(&mut chars)
        };
        pairs.push(Pair { key, value });
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_blanks(chars: &mut Chars<'_>) {
    while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
}

/// A key ends at `=` or a blank.
fn read_key(chars: &mut Chars<'_>) -> String {
    let mut key = String::new();
    while let Some(c) = chars.next_if(|&c| c != '=' && !c.is_ascii_whitespace()) {
        key.push(c);
    }
    key
}

/// An unquoted value ends at a blank; `\x` stands for `x`.
fn read_bare(chars: &mut Chars<'_>) -> String {
    let mut value = String::new();
    while let Some(c) = chars.next_if(|c| !c.is_ascii_whitespace()) {
        match c {
            '\\' => value.extend(chars.next()),
            c => value.push(c),
        }
    }
    value
}

/// A quoted value (after its opening quote) ends at an unescaped `'`.
fn read_quoted(chars: &mut Chars<'_>) -> Result<String, ConnInfoError> {
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\'' => return Ok(value),
            '\\' => value.extend(chars.next()),
            c => value.push(c),
        }
    }
    Err(ConnInfoError::Syntax(
        "unterminated quoted string in connection info string".into(),
    ))
}

/// libpq's message, except that a word following a secret is not echoed: in
/// `password=two words` the second word is part of the password.
fn missing_equals(key: &str, previous: Option<&Pair>) -> ConnInfoError {
    if previous.is_some_and(|p| keys::is_secret(&p.key)) {
        return ConnInfoError::Syntax(format!(
            "missing \"=\" after the word following \"{}\" in connection info string (quote values that contain blanks)",
            previous.map_or("", |p| p.key.as_str())
        ));
    }
    ConnInfoError::Syntax(format!(
        "missing \"=\" after \"{}\" in connection info string",
        key.escape_debug()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        key_values(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
        let err = key_values("host").unwrap_err().to_string();
        assert!(err.contains("missing \"=\" after \"host\""), "{err}");
        let err = key_values("host x=1").unwrap_err().to_string();
        assert!(err.contains("missing \"=\" after \"host\""), "{err}");
        let err = key_values("user='abc").unwrap_err().to_string();
        assert!(err.contains("unterminated quoted string"), "{err}");
    }

    /// A word after an unquoted password is not echoed in the error.
    #[test]
    fn never_echoes_password_words() {
        let err = key_values("password=hunter 2pac").unwrap_err().to_string();
        assert!(!err.contains("2pac"), "{err}");
        let err = key_values("password='hunter2").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!format!("{:?}", key_values("password=x1y2").unwrap()).contains("x1y2"));
    }
}
