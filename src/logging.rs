//! Log output: pgqd's line format (or JSON lines) to the console, the logfile and syslog.
//!
//! Events are plain `tracing` events. Levels map to pgqd's tags: ERROR→ERROR,
//! WARN→WARNING, INFO→LOG, DEBUG→DEBUG, TRACE→NOISE, and an event with `fatal = true`
//! is tagged FATAL. Span fields (`db`) and event fields (`job`, `sqlstate`, ...) are
//! kept as fields: JSON writes them as keys; text writes the database as pgqd's
//! `[name]: ` prefix and the rest as `key=value` after the message.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, filter::LevelFilter};

use crate::config::{Config, LogFormat, Warning};

mod syslog;

/// Where lines go; shared with the [`LogHandle`] that reopens them on SIGHUP.
struct Sinks {
    console: bool,
    format: LogFormat,
    file: Option<(PathBuf, File)>,
    syslog: Option<syslog::Syslog>,
}

/// Controls the installed logger after start-up.
#[derive(Clone)]
pub struct LogHandle {
    sinks: Arc<Mutex<Sinks>>,
}

/// Console options from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleOptions {
    pub verbose: u8,
    pub quiet: bool,
}

/// Installs the global logger: console only until [`LogHandle::apply`] adds the rest.
pub fn init(options: ConsoleOptions) -> LogHandle {
    let sinks = Arc::new(Mutex::new(Sinks {
        console: !options.quiet,
        format: LogFormat::Text,
        file: None,
        syslog: None,
    }));
    let level = match options.verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let layer = PgqdLayer {
        sinks: sinks.clone(),
    }
    .with_filter(level);
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
    LogHandle { sinks }
}

impl LogHandle {
    /// Opens (or reopens) the logfile and syslog of `config`; on SIGHUP this is what
    /// makes logrotate work. On error the previous sinks stay.
    pub fn apply(&self, config: &Config) -> Result<(), String> {
        let file = match &config.logfile {
            Some(path) => Some((path.clone(), open_log(path)?)),
            None => None,
        };
        let syslog = syslog::Syslog::wanted(config).then(|| syslog::Syslog::open(config));
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.file = file;
        sinks.syslog = syslog;
        sinks.format = config.log_format;
        Ok(())
    }

    /// Stops writing to the console (after daemonizing, stdio is /dev/null anyway).
    pub fn disable_console(&self) {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).console = false;
    }
}

/// Logs the warnings found while reading the config, to every sink open now: call it
/// after [`LogHandle::apply`], so they are not lost to a console that `-q` or `-d`
/// silences.
pub fn config_warnings(warnings: &[Warning]) {
    for warning in warnings {
        tracing::warn!("{} ({})", warning.message, warning.origin);
    }
}

fn open_log(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot open logfile \"{}\": {}",
                path.display(),
                crate::config::io_reason(&e)
            )
        })
}

struct PgqdLayer {
    sinks: Arc<Mutex<Sinks>>,
}

/// Fields recorded on a span, kept in the span's extensions.
struct SpanFields(Vec<(&'static str, String)>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PgqdLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.pairs));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(recorded) = span.extensions().get::<SpanFields>() {
                    fields.pairs.extend(recorded.0.iter().cloned());
                }
            }
        }
        event.record(&mut fields);
        let record = Record::new(*event.metadata().level(), fields);
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.write(&record);
    }
}

impl Sinks {
    fn write(&mut self, record: &Record) {
        let line = match self.format {
            LogFormat::Text => record.text_line(),
            LogFormat::Json => record.json_line(),
        };
        if self.console {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some((_, file)) = &mut self.file {
            let _ = file.write_all(line.as_bytes());
        }
        if let Some(syslog) = &self.syslog {
            syslog.send(record.tag, &record.text_body());
        }
    }
}

/// Event and span fields in recording order, `message` separated out.
#[derive(Default)]
struct Fields {
    message: String,
    fatal: bool,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "fatal" {
            self.fatal = value;
        } else {
            self.put(field, value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            name => self.pairs.push((name, value)),
        }
    }
}

/// One log line before formatting.
struct Record {
    time: Timestamp,
    tag: &'static str,
    fields: Fields,
}

impl Record {
    fn new(level: Level, fields: Fields) -> Self {
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
        }
    }

    /// pgqd's body: `[db]: message key=value ...`, a tab after each newline.
    fn text_body(&self) -> String {
        let mut body = String::new();
        if let Some((_, db)) = self.fields.pairs.iter().find(|(k, _)| *k == "db") {
            let _ = write!(body, "{db}: ");
        }
        body.push_str(&self.fields.message);
        for (key, value) in self.fields.pairs.iter().filter(|(k, _)| *k != "db") {
            let _ = write!(body, " {key}={}", quote_if_needed(value));
        }
        body.replace('\n', "\n\t")
    }

    fn text_line(&self) -> String {
        format!(
            "{} [{}] {} {}\n",
            self.time.text,
            std::process::id(),
            self.tag,
            self.text_body()
        )
    }

    fn json_line(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert("timestamp".into(), self.time.iso.clone().into());
        object.insert("pid".into(), std::process::id().into());
        object.insert("level".into(), self.tag.into());
        object.insert("message".into(), self.fields.message.clone().into());
        for (key, value) in &self.fields.pairs {
            object.insert((*key).into(), value.clone().into());
        }
        let mut line = serde_json::Value::Object(object).to_string();
        line.push('\n');
        line
    }
}

fn quote_if_needed(value: &str) -> String {
    if value.is_empty() || value.contains([' ', '"', '=']) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
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
        let secs = now.as_secs() as libc::time_t;
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
fn strftime(secs: libc::time_t, format: &std::ffi::CStr) -> String {
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

/// The one place a database name is formatted for logs: `[name]`, control
/// characters replaced by `?`, as pgqd does.
pub fn db_label(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!("[{clean}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: Level, message: &str, pairs: &[(&'static str, &str)]) -> Record {
        let fields = Fields {
            message: message.into(),
            fatal: false,
            pairs: pairs.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        };
        Record::new(level, fields)
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
        assert_eq!(value["db"], "[x]");
        assert_eq!(value["duration"], "1.5");
        assert!(value["timestamp"].as_str().unwrap().contains('T'));
    }

    /// Database names are bracketed with control characters replaced.
    #[test]
    fn db_labels() {
        assert_eq!(db_label("db1"), "[db1]");
        assert_eq!(db_label("a\nb\tc"), "[a?b?c]");
        assert_eq!(db_label("ünï 'q\""), "[ünï 'q\"]");
    }
}
