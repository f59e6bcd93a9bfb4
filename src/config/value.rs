//! Value rules shared by pgqd.ini (every value a string) and TOML (typed values).
//!
//! Each module is a serde `with` pair. Deserializers accept the ini string form and
//! the natural TOML type, so `ticker_period = "0.5"` and `ticker_period = 0.5` mean
//! the same.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;

/// Periods and timeouts: non-negative decimal seconds, as pgqd's strtod, but
/// never zero (a zero period would be a busy loop; pgqd 3.5 accepts it) and never
/// so large that a timer would overflow.
pub mod seconds {
    use super::*;
    use std::time::Duration;

    /// Longer than any sensible period (about 31 years), small enough for every timer.
    const MAX_SECONDS: f64 = 1e9;

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(SecondsVisitor)
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        if !is_decimal(text) {
            return Err(
                "expected seconds as a decimal number such as 1 or 0.5, without unit".into(),
            );
        }
        let seconds: f64 = text.parse().map_err(|_| "not a number".to_string())?;
        from_f64(seconds)
    }

    fn is_decimal(text: &str) -> bool {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac)
    }

    fn from_f64(seconds: f64) -> Result<Duration, String> {
        if seconds.is_nan() || seconds <= 0.0 {
            return Err("must be greater than 0".into());
        }
        if seconds > MAX_SECONDS {
            return Err(format!("must be at most {MAX_SECONDS:e} seconds"));
        }
        // Rounded to whole milliseconds: no timer here is finer, and it keeps
        // "0.1" from becoming 0.1000000000000000055 s in --check output.
        Ok(Duration::from_millis(
            (seconds * 1000.0).round().max(1.0) as u64
        ))
    }

    struct SecondsVisitor;

    impl<'de> Visitor<'de> for SecondsVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number of seconds")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            from_f64(v as f64).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            from_f64(v as f64).map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            from_f64(v).map_err(E::custom)
        }
    }
}

/// Integers with C's strtol base 0 rules, as pgqd: `10`, `0x10`, `010` (octal), signs.
pub mod integer {
    use super::*;

    pub fn serialize<S: Serializer>(value: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(IntegerVisitor)
    }

    pub fn parse(text: &str) -> Result<i64, String> {
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
            return Err("expected an integer".into());
        }
        let value =
            i64::from_str_radix(digits, radix).map_err(|_| "expected an integer".to_string())?;
        Ok(if negative { -value } else { value })
    }

    struct IntegerVisitor;

    impl<'de> Visitor<'de> for IntegerVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            parse(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(E::custom)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<i64, E> {
            Ok(v.into())
        }
    }
}

/// `database_list`: split on commas only, blanks trimmed, empty items dropped; TOML
/// may also give an array of names (kept exactly, so a name may contain a comma).
pub mod list {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(ListVisitor)
    }

    pub fn split(text: &str) -> Vec<String> {
        text.split(',')
            .map(|item| item.trim_matches([' ', '\t']))
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    }

    struct ListVisitor;

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("comma-separated names or a list of names")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(split(v))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                if name.is_empty() {
                    return Err(de::Error::custom("a database name cannot be empty"));
                }
                names.push(name);
            }
            Ok(names)
        }
    }
}

/// File values: `~`/`~user` expanded; empty means not set.
pub mod file {
    use super::*;
    use std::path::PathBuf;

    pub fn serialize<S: Serializer>(value: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        let text = value
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        let expanded = super::super::expand_home(&text).map_err(de::Error::custom)?;
        Ok(Some(PathBuf::from(expanded)))
    }
}

/// `syslog_facility`: the names pgqd accepts.
pub mod facility {
    use super::*;

    pub const NAMES: &[&str] = &[
        "auth", "authpriv", "cron", "daemon", "lpr", "mail", "news", "syslog", "user", "uucp",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ];

    pub fn serialize<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        if NAMES.contains(&text.as_str()) {
            return Ok(text);
        }
        Err(de::Error::custom(format!(
            "expected one of {}",
            NAMES.join(", ")
        )))
    }
}
