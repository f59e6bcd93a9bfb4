//! Log output: pgqd's line format (or JSON lines) to the console, the logfile and syslog.
//!
//! Events are plain `tracing` events. Levels map to pgqd's tags: ERROR→ERROR,
//! WARN→WARNING, INFO→LOG, DEBUG→DEBUG, TRACE→NOISE, and an event with `fatal = true`
//! is tagged FATAL. Span fields (`db`) and event fields (`job`, `sqlstate`, ...) are
//! kept as fields: JSON writes them as keys; text writes the database as pgqd's
//! `[name]: ` prefix and the rest as `key=value` after the message (`format`).
//! The stats line is an event with target [`STATS_TARGET`] and u64 fields `ticks`,
//! `maint`, `retry`: text prints its message alone, JSON the numbers as well.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, filter::LevelFilter};

use crate::config::{Config, LogFormat, Warning};

mod format;
mod syslog;

pub use format::STATS_TARGET;
use format::{Fields, Record};

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
    };
    // The level as a global filter, not the layer's own: a per-layer filter looks up
    // the span's filter state on every enter and exit, and the database tasks' spans
    // are entered at every poll.
    let subscriber = tracing_subscriber::registry().with(level).with(layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
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
struct SpanFields(Vec<(&'static str, serde_json::Value)>);

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
        let metadata = event.metadata();
        let record = Record::new(*metadata.level(), metadata.target(), fields);
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

    /// What the layer writes for the events `emit` sends, in `format`: a subscriber
    /// whose only sink is a temporary log file.
    fn logged(format: LogFormat, emit: impl FnOnce()) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        let sinks = Arc::new(Mutex::new(Sinks {
            console: false,
            format,
            file: Some((file.path().to_path_buf(), file.reopen().unwrap())),
            syslog: None,
        }));
        let subscriber = tracing_subscriber::registry().with(PgqdLayer { sinks });
        tracing::subscriber::with_default(subscriber, emit);
        std::fs::read_to_string(file.path()).unwrap()
    }

    /// The stats line as the supervisor emits it.
    fn stats_event() {
        let (ticks, maint, retry) = (20u64, 4u64, 0u64);
        tracing::info!(
            target: STATS_TARGET,
            ticks,
            maint,
            retry,
            "{{ticks: {ticks}, maint: {maint}, retry: {retry}}}"
        );
    }

    fn json(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// In text the stats line is exactly pgqd's, with no key=value suffix.
    #[test]
    fn stats_line_text_is_pgqd_s() {
        let line = logged(LogFormat::Text, stats_event);
        assert!(
            line.ends_with(" LOG {ticks: 20, maint: 4, retry: 0}\n"),
            "{line:?}"
        );
        assert_eq!(line.lines().count(), 1);
    }

    /// In JSON the stats line carries its counters as numbers, and the message.
    #[test]
    fn stats_line_json_has_numbers() {
        let value = json(&logged(LogFormat::Json, stats_event));
        assert_eq!(value["message"], "{ticks: 20, maint: 4, retry: 0}");
        assert_eq!(
            (&value["ticks"], &value["maint"], &value["retry"]),
            (&20.into(), &4.into(), &0.into())
        );
        assert!(value["ticks"].is_u64(), "{value}");
    }

    /// The database of a span is `[name]: ` in text and the bare name in JSON.
    #[test]
    fn db_span_in_text_and_json() {
        let emit = || {
            let _span = tracing::info_span!("db", db = db_label("db2")).entered();
            tracing::info!("pgq version ok: 3.5");
        };
        assert!(logged(LogFormat::Text, emit).ends_with(" LOG [db2]: pgq version ok: 3.5\n"));
        let value = json(&logged(LogFormat::Json, emit));
        assert_eq!(
            (&value["db"], &value["message"]),
            (&"db2".into(), &"pgq version ok: 3.5".into())
        );
    }

    /// A missing SQLSTATE ("-") is no field at all; a real one is kept.
    #[test]
    fn missing_sqlstate_is_omitted() {
        let emit = || {
            tracing::error!(job = "ticker", sqlstate = "-", "connection lost");
            tracing::error!(job = "ticker", sqlstate = "55000", "failed");
        };
        let text = logged(LogFormat::Text, emit);
        assert!(
            text.contains("ERROR connection lost job=ticker\n"),
            "{text}"
        );
        assert!(
            text.contains("ERROR failed job=ticker sqlstate=55000\n"),
            "{text}"
        );
        let lines: Vec<_> = logged(LogFormat::Json, emit).lines().map(json).collect();
        assert!(lines[0].get("sqlstate").is_none(), "{}", lines[0]);
        assert_eq!(lines[1]["sqlstate"], "55000");
    }

    /// A database name with a newline stays on its line in text: the label replaces it.
    #[test]
    fn newline_in_db_name_stays_on_one_line() {
        let emit = || {
            let _span = tracing::info_span!("db", db = db_label("a\nb")).entered();
            tracing::warn!(queue = "q\nx", "odd\rname");
        };
        let text = logged(LogFormat::Text, emit);
        assert!(
            text.ends_with(" WARNING [a?b]: odd\\rname queue=\"q\\nx\"\n"),
            "{text:?}"
        );
    }

    /// Database names are bracketed with control characters replaced.
    #[test]
    fn db_labels() {
        assert_eq!(db_label("db1"), "[db1]");
        assert_eq!(db_label("a\nb\tc"), "[a?b?c]");
        assert_eq!(db_label("ünï 'q\""), "[ünï 'q\"]");
    }
}
