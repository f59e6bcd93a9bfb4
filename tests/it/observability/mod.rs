//! What an operator sees: the HTTP listener's endpoints, the log lines that keep
//! saying why, and the alert rules proven with promtool and a real Prometheus.

mod endpoints;
mod logs;
mod pki;
mod prometheus;
mod secured;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::Daemon;

pub use crate::harness::free_port;

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends `method path` as HTTP/1.0 (so the server closes the connection after one
/// response with a plain body) and reads the response; `None` if nothing answers.
pub fn request(port: u16, method: &str, path: &str) -> Option<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let head = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (headers, body) = text.split_once("\r\n\r\n")?;
    let status = headers.split(' ').nth(1)?.parse().ok()?;
    Some(Response {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    })
}

/// `GET path`, panicking when nothing answers.
pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path).unwrap_or_else(|| panic!("no answer to GET {path} on {port}"))
}

/// The `[pgqd]` lines that turn the listener on at `port`.
pub fn listen_on(port: u16) -> String {
    format!("http_listen = 127.0.0.1:{port}")
}

/// Polls `condition` every 200 ms until it holds or `deadline` passes; on timeout,
/// panics with the daemon's output.
pub fn wait_long(
    daemon: &Daemon,
    what: &str,
    deadline: Duration,
    mut condition: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "timed out after {deadline:?} waiting for {what}; pgqd output:\n{}",
        daemon.output()
    );
}

/// One sample of the text exposition format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` page: the declared families (`# TYPE`) and the samples.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses OpenMetrics text strictly: every line is a comment or a sample, label
    /// values unescaped, the page ends with `# EOF`. `Err` names the first bad line.
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut page = Exposition::default();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line == "# EOF" {
                return match lines.peek() {
                    None => Ok(page),
                    Some(extra) => Err(format!("text after # EOF: {extra:?}")),
                };
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line:?}"))?;
                page.families.insert(name.into(), kind.into());
            } else if !line.starts_with("# HELP ") && !line.starts_with("# UNIT ") {
                page.samples.push(parse_sample(line)?);
            }
        }
        Err("no # EOF at the end".into())
    }

    /// The samples called `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The value of the sample `name` whose labels include every one of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.named(name)
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// The family a sample belongs to: its name, or its name without the suffix its
    /// family's type allows (`_total` of a counter; `_bucket`, `_sum`, `_count` of a
    /// histogram).
    pub fn family_of(&self, sample: &str) -> Option<&str> {
        if self.families.contains_key(sample) {
            return Some(self.families.get_key_value(sample)?.0);
        }
        let suffixes: &[(&str, &str)] = &[
            ("_total", "counter"),
            ("_created", "counter"),
            ("_bucket", "histogram"),
            ("_sum", "histogram"),
            ("_count", "histogram"),
            ("_created", "histogram"),
        ];
        suffixes.iter().find_map(|(suffix, kind)| {
            let base = sample.strip_suffix(suffix)?;
            let (name, declared) = self.families.get_key_value(base)?;
            (declared == kind).then_some(name.as_str())
        })
    }
}

/// `name{k="v",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("bad sample line: {line:?}");
    let name_end = line.find(['{', ' ']).ok_or_else(bad)?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(bad());
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end + 1..]).ok_or_else(bad)?
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let value = rest
        .strip_prefix(' ')
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(bad)?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Labels after the `{`, up to and including the `}`; returns the text after it.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                (_, '\n') => return None,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        text = &rest[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

/// The page at `/metrics`, parsed; panics with the text when it does not parse.
pub fn metrics(port: u16) -> Exposition {
    let response = get(port, "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    Exposition::parse(&response.body)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", response.body))
}
