//! Raw values as the readers give them, and the rules that type them.
//!
//! pgqd.ini and the environment give text; TOML gives typed values, kept as they are
//! in [`Raw`]. Each [`Rule`] accepts the text form and the natural TOML type, so
//! `ticker_period = "0.5"` and `ticker_period = 0.5` mean the same, and every source
//! goes through the same checks.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use pgconninfo::ConnStr;

use super::{ForeignTicker, LogFormat};

/// A value before typing.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// pgqd.ini and environment values, and TOML strings.
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// A TOML array of strings.
    List(Vec<String>),
    /// Any other TOML value (table, date, mixed array), as TOML writes it.
    Other(String),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Text(text) | Raw::Other(text) => f.write_str(text),
            Raw::Integer(n) => write!(f, "{n}"),
            Raw::Float(x) => write!(f, "{x}"),
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::List(items) => write!(f, "{items:?}"),
        }
    }
}

/// How one kind of setting is typed from a raw value and shown by `--check`.
pub trait Rule {
    type Value;
    /// The typed value, or why the raw value is refused (without repeating it).
    fn parse(raw: &Raw) -> Result<Self::Value, String>;
    /// The value as `--check` prints it.
    fn show(value: &Self::Value) -> String;
    /// The raw value as an error message may quote it; `None`: not shown.
    fn quote(raw: &Raw) -> Option<String> {
        Some(super::escape(&raw.to_string()))
    }
}

fn text<'a>(raw: &'a Raw, expected: &str) -> Result<&'a str, String> {
    match raw {
        Raw::Text(text) => Ok(text),
        _ => Err(format!("expected {expected}")),
    }
}

/// Periods and timeouts: decimal seconds (as pgqd's strtod, without exponents or
/// signs), from 1 ms (no timer here is finer; pgqd 3.5 accepts zero, a busy loop) to
/// a bound that no timer overflows.
pub struct Seconds;

impl Seconds {
    /// Longer than any sensible period (about 31 years), small enough for every timer.
    const MAX: f64 = 1_000_000_000.0;
    const EXPECTED: &str = "expected seconds as a decimal number such as 1 or 0.5, without unit";

    fn from_f64(seconds: f64) -> Result<Duration, String> {
        if seconds.is_nan() || seconds < 0.001 {
            return Err("must be at least 0.001 seconds (1 ms)".into());
        }
        if seconds > Self::MAX {
            return Err(format!("must be at most {} seconds", Self::MAX));
        }
        // Rounded to whole milliseconds: it keeps "0.1" from becoming
        // 0.1000000000000000055 s in --check output.
        Ok(Duration::from_millis((seconds * 1000.0).round() as u64))
    }

    fn is_decimal(text: &str) -> bool {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac)
    }
}

impl Rule for Seconds {
    type Value = Duration;
    fn parse(raw: &Raw) -> Result<Duration, String> {
        match raw {
            Raw::Text(text) if Self::is_decimal(text) => {
                Self::from_f64(text.parse().map_err(|_| Self::EXPECTED.to_string())?)
            }
            Raw::Integer(n) => Self::from_f64(*n as f64),
            Raw::Float(x) => Self::from_f64(*x),
            _ => Err(Self::EXPECTED.into()),
        }
    }
    fn show(value: &Duration) -> String {
        value.as_secs_f64().to_string()
    }
}

/// Integers with C's strtol base 0 rules, as pgqd: `10`, `0x10`, `010` (octal), signs.
pub struct Integer;

impl Integer {
    fn from_text(text: &str) -> Result<i64, String> {
        let expected = || "expected an integer such as 1, 0x10 or 010".to_string();
        let (negative, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (radix, digits) = if let Some(hex) = body.strip_prefix("0x").or(body.strip_prefix("0X"))
        {
            (16, hex)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
        if digits.is_empty() || digits.starts_with(['+', '-']) {
            return Err(expected());
        }
        let value = i64::from_str_radix(digits, radix).map_err(|_| expected())?;
        Ok(if negative { -value } else { value })
    }
}

impl Rule for Integer {
    type Value = i64;
    fn parse(raw: &Raw) -> Result<i64, String> {
        match raw {
            Raw::Text(text) => Self::from_text(text),
            Raw::Integer(n) => Ok(*n),
            Raw::Bool(b) => Ok((*b).into()),
            _ => Err("expected an integer".into()),
        }
    }
    fn show(value: &i64) -> String {
        value.to_string()
    }
}

/// Free text, kept as written.
pub struct Text;

impl Rule for Text {
    type Value = String;
    fn parse(raw: &Raw) -> Result<String, String> {
        text(raw, "a string").map(str::to_string)
    }
    fn show(value: &String) -> String {
        value.clone()
    }
}

/// `database_list`: names split on commas, blanks around them trimmed; empty text
/// means every database, but an empty name between commas is refused (`a,,b` is a
/// typo, not "all"). TOML may give an array of names, kept exactly (a name may then
/// contain a comma).
pub struct List;

impl Rule for List {
    type Value = Vec<String>;
    fn parse(raw: &Raw) -> Result<Vec<String>, String> {
        let names: Vec<String> = match raw {
            Raw::Text(text) if text.trim_matches([' ', '\t']).is_empty() => return Ok(Vec::new()),
            Raw::Text(text) => text
                .split(',')
                .map(|item| item.trim_matches([' ', '\t']).to_string())
                .collect(),
            Raw::List(names) => names.clone(),
            _ => return Err("expected comma-separated names or a list of names".into()),
        };
        if names.iter().any(String::is_empty) {
            return Err("a database name cannot be empty".into());
        }
        Ok(names)
    }
    fn show(value: &Vec<String>) -> String {
        value.join(", ")
    }
}

/// File values: `~`/`~user` expanded; empty means not set.
pub struct File;

impl Rule for File {
    type Value = Option<PathBuf>;
    fn parse(raw: &Raw) -> Result<Option<PathBuf>, String> {
        match text(raw, "a file name")? {
            "" => Ok(None),
            name => super::expand_home(name)
                .map(|path| Some(PathBuf::from(path)))
                .map_err(|e| e.to_string()),
        }
    }
    fn show(value: &Option<PathBuf>) -> String {
        value
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// `syslog_facility`: the names pgqd accepts.
pub struct Facility;

impl Facility {
    pub const NAMES: &[&str] = &[
        "auth", "authpriv", "cron", "daemon", "lpr", "mail", "news", "syslog", "user", "uucp",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ];
}

impl Rule for Facility {
    type Value = String;
    fn parse(raw: &Raw) -> Result<String, String> {
        let expected = || format!("expected one of {}", Self::NAMES.join(", "));
        let name = text(raw, "a string").map_err(|_| expected())?;
        Self::NAMES
            .contains(&name)
            .then(|| name.to_string())
            .ok_or_else(expected)
    }
    fn show(value: &String) -> String {
        value.clone()
    }
}

/// `log_format`: `text` or `json`.
pub struct Format;

impl Rule for Format {
    type Value = LogFormat;
    fn parse(raw: &Raw) -> Result<LogFormat, String> {
        match text(raw, "text or json")? {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
    fn show(value: &LogFormat) -> String {
        match value {
            LogFormat::Text => "text".into(),
            LogFormat::Json => "json".into(),
        }
    }
}

/// `foreign_ticker`: `warn` or `yield`.
pub struct Foreign;

impl Rule for Foreign {
    type Value = ForeignTicker;
    fn parse(raw: &Raw) -> Result<ForeignTicker, String> {
        match text(raw, "warn or yield")? {
            "warn" => Ok(ForeignTicker::Warn),
            "yield" => Ok(ForeignTicker::Yield),
            _ => Err("expected warn or yield".into()),
        }
    }
    fn show(value: &ForeignTicker) -> String {
        match value {
            ForeignTicker::Warn => "warn".into(),
            ForeignTicker::Yield => "yield".into(),
        }
    }
}

/// `base_connstr`: kept as text here (checked as a whole once typed). `--check` shows
/// it with the password masked; error messages never quote it, because text that
/// does not parse cannot be masked reliably (`'password=x` is an unknown key, and its
/// value is still the user's password).
pub struct Connstr;

impl Rule for Connstr {
    type Value = ConnStr;
    fn parse(raw: &Raw) -> Result<ConnStr, String> {
        text(raw, "a connection string").map(ConnStr::new)
    }
    fn show(value: &ConnStr) -> String {
        value.to_string()
    }
    fn quote(_: &Raw) -> Option<String> {
        None
    }
}
