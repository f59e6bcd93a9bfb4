//! One log event as a line: pgqd's text format or a JSON object.
//!
//! Text keeps pgqd's shape: the database as the `[name]: ` prefix, other fields as
//! `key=value` after the message, a tab after each newline (pgqd's continuation lines,
//! so a message can never forge a line of its own), and other control characters
//! escaped. JSON writes the fields as keys, numbers as numbers, the database without
//! pgqd's brackets.

use std::fmt::Write as _;

use serde_json::Value;
use tracing::Level;
use tracing::field::{Field, Visit};

/// The target of the stats line: its counters are fields for JSON, while text prints
/// the message alone, exactly pgqd's `{ticks: N, maint: N, retry: N}`.
pub const STATS_TARGET: &str = "pgqd::stats";

/// Event and span fields in recording order, `message` separated out.
#[derive(Default)]
pub struct Fields {
    pub message: String,
    pub fatal: bool,
    pub pairs: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "fatal" {
            self.fatal = value;
        } else {
            self.put(field, value.into());
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are no JSON numbers: kept as text.
        let number = serde_json::Number::from_f64(value);
        self.put(
            field,
            number.map_or_else(|| value.to_string().into(), Value::Number),
        );
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => self.message = as_text(&value),
            // "-" is how a missing SQLSTATE is spelled: no field rather than `sqlstate=-`.
            "sqlstate" if matches!(value.as_str(), Some("-" | "")) => {}
            name => self.pairs.push((name, value)),
        }
    }
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// One log line before formatting.
pub struct Record {
    time: Timestamp,
    pub tag: &'static str,
    fields: Fields,
    /// Text shows the message alone (the stats line); JSON still has the fields.
    message_only: bool,
}

impl Record {
    pub fn new(level: Level, target: &str, fields: Fields) -> Self {
        let tag = match level {
            _ if fields.fatal => "FATAL",
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "LOG",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "NOISE",
        };
        Record {
            time: Timestamp::now(),
            tag,
            fields,
            message_only: target == STATS_TARGET,
        }
    }

    /// pgqd's body: `[db]: message key=value ...`, a tab after each newline.
    pub fn text_body(&self) -> String {
        let mut body = String::new();
        if let Some((_, db)) = self.fields.pairs.iter().find(|(k, _)| *k == "db") {
            let _ = write!(body, "{}: ", as_text(db));
        }
        body.push_str(&self.fields.message);
        let fields = self.fields.pairs.iter().filter(|(k, _)| *k != "db");
        for (key, value) in fields.filter(|_| !self.message_only) {
            let _ = write!(body, " {key}={}", quote_if_needed(&as_text(value)));
        }
        escape_text(&body)
    }

    pub fn text_line(&self) -> String {
        format!(
            "{} [{}] {} {}\n",
            self.time.text,
            std::process::id(),
            self.tag,
            self.text_body()
        )
    }

    pub fn json_line(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert("timestamp".into(), self.time.iso.clone().into());
        object.insert("pid".into(), std::process::id().into());
        object.insert("level".into(), self.tag.into());
        object.insert("message".into(), self.fields.message.clone().into());
        for (key, value) in &self.fields.pairs {
            let value = match (*key, value) {
                ("db", Value::String(label)) => unbracketed(label).into(),
                _ => value.clone(),
            };
            object.insert((*key).into(), value);
        }
        let mut line = Value::Object(object).to_string();
        line.push('\n');
        line
    }
}

/// The database name inside pgqd's `[name]` label (made by `db_label`).
fn unbracketed(label: &str) -> &str {
    label
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .unwrap_or(label)
}

/// Field values with blanks, quotes, `=` or control characters are quoted (and then
/// escaped), so each stays one token on one line.
fn quote_if_needed(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '"', '=']) || value.contains(char::is_control) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// pgqd's continuation lines (a tab after each newline); any other control character
/// but the tab escaped (`\r`, `\u{1b}`), so nothing can rewrite or forge a line.
fn escape_text(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\n\t"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Local time as pgqd prints it (`2026-11-22 21:06:46.969 UTC`) and as RFC 3339.
struct Timestamp {
    text: String,
    iso: String,
}

impl Timestamp {
    fn now() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let millis = now.subsec_millis();
        let secs = now.as_secs();
        let date = strftime(secs, c"%Y-%m-%d");
        let time = strftime(secs, c"%H:%M:%S");
        let zone = strftime(secs, c"%Z");
        let offset = strftime(secs, c"%z");
        let offset = if offset.len() == 5 {
            format!("{}:{}", &offset[..3], &offset[3..])
        } else {
            offset
        };
        Timestamp {
            text: format!("{date} {time}.{millis:03} {zone}"),
            iso: format!("{date}T{time}.{millis:03}{offset}"),
        }
    }
}

/// C's localtime_r + strftime, which honour TZ exactly as pgqd's own log lines do.
fn strftime(secs: u64, format: &std::ffi::CStr) -> String {
    // C's time_t, inferred from localtime_r's signature: the libc crate deprecates
    // naming it on musl, where its width is to change (64 bits on x86_64 and aarch64).
    let secs = secs as _;
    let mut buf = [0u8; 64];
    // SAFETY: `tm` is fully written by localtime_r before use; strftime writes at most
    // `buf.len()` bytes including the terminating NUL and returns the length written.
    let len = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return String::new();
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: Level, message: &str, pairs: &[(&'static str, &str)]) -> Record {
        let fields = Fields {
            message: message.into(),
            fatal: false,
            pairs: pairs.iter().map(|(k, v)| (*k, (*v).into())).collect(),
        };
        Record::new(level, "pgqd", fields)
    }

    /// Text lines have pgqd's shape: date, time.millis, zone, [pid], tag, message.
    #[test]
    fn text_line_shape() {
        let line = record(Level::INFO, "Starting pgqd 0.1", &[]).text_line();
        let parts: Vec<&str> = line.splitn(5, ' ').collect();
        assert_eq!(parts[0].len(), 10, "{line}");
        assert_eq!(parts[1].len(), 12, "{line}");
        assert_eq!(parts[3], format!("[{}]", std::process::id()));
        assert_eq!(parts[4], "LOG Starting pgqd 0.1\n");
    }

    /// Levels map to pgqd's tags.
    #[test]
    fn level_tags() {
        let tag = |level| record(level, "m", &[]).tag;
        assert_eq!(
            [
                tag(Level::ERROR),
                tag(Level::WARN),
                tag(Level::INFO),
                tag(Level::DEBUG),
                tag(Level::TRACE)
            ],
            ["ERROR", "WARNING", "LOG", "DEBUG", "NOISE"]
        );
    }

    /// The database comes first as pgqd's prefix, other fields follow as key=value, and
    /// continuation lines get a tab.
    #[test]
    fn text_body_fields() {
        let r = record(
            Level::ERROR,
            "query failed:\nDETAIL x",
            &[("db", "[a b]"), ("job", "ticker"), ("sqlstate", "55000")],
        );
        assert_eq!(
            r.text_body(),
            "[a b]: query failed:\n\tDETAIL x job=ticker sqlstate=55000"
        );
    }

    /// JSON lines carry the fields as keys.
    #[test]
    fn json_line_fields() {
        let r = record(Level::WARN, "slow", &[("db", "[x]"), ("duration", "1.5")]);
        let value: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(value["level"], "WARNING");
        assert_eq!(value["message"], "slow");
        assert_eq!(value["db"], "x");
        assert_eq!(value["duration"], "1.5");
        assert!(value["timestamp"].as_str().unwrap().contains('T'));
    }

    /// A carriage return or escape sequence cannot rewrite a line: escaped in the
    /// message and in field values; a newline in a field value is escaped too, so the
    /// field stays on its line; the tab of pgqd's continuation lines is kept.
    #[test]
    fn text_escapes_control_characters() {
        let r = record(
            Level::WARN,
            "a\rb\x1b[2Jc\td\ne",
            &[("query", "select\n1"), ("queue", "q\r")],
        );
        assert_eq!(
            r.text_body(),
            "a\\rb\\u{1b}[2Jc\td\n\te query=\"select\\n1\" queue=\"q\\r\""
        );
    }
}
