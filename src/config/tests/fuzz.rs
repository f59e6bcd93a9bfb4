//! Property tests over the readers and the typing step: arbitrary bytes and mutations
//! of the shipped samples never panic, finish quickly, and never show the password
//! of base_connstr in an error, a warning or `--check` output.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as Runner, TestRunner};

use super::super::*;

/// Far above what any case needs (a few KB of text), yet a hang fails the test.
const CASE_DEADLINE: Duration = Duration::from_secs(5);

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Runner {
        cases,
        failure_persistence: None,
        ..Runner::default()
    })
}

/// A password unlikely to occur by chance in any message.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{8,14}".prop_map(|tail| format!("Pw{tail}"))
}

/// base_connstr values holding `secret` as a password, with neighbours that make
/// them fail in different places (unknown keys, bad values, quotes, URIs).
fn connstr(secret: &str) -> impl Strategy<Value = String> + use<> {
    let before = prop::sample::select(vec![
        "",
        "host=/tmp ",
        "host='/tmp' port=5432 ",
        "nosuchkey=1 ",
        "sslmode=bogus ",
        "port=x ",
        "application_name='a b' ",
        "'",
        "host='/tmp ",
        "= ",
        "user=u\\ v ",
    ]);
    let after = prop::sample::select(vec![
        "",
        " dbname=x",
        " badword",
        " port=",
        " '",
        " sslmode=verify-full",
        "\\",
    ]);
    let secret = secret.to_string();
    (before, after, any::<bool>()).prop_map(move |(before, after, uri)| {
        if uri {
            format!("postgresql://user:{secret}@{}/db?x{after}", before.trim())
        } else if before.ends_with('\'') || before.ends_with("'/tmp ") && after == " '" {
            // A quote closed after the password would make it part of that quoted
            // value (a host name, say), which libpq would not read as a password.
            format!("{before}password={secret}")
        } else {
            format!("{before}password={secret}{after}")
        }
    })
}

/// Lines a user (or a typo) could add to a config file.
const LINES: &[&str] = &[
    "%include /nonexistent/x.ini",
    "%include /dev/zero",
    "%include",
    "[pgqd]",
    "[other]",
    "'quoted key' = 1",
    "ticker_period = 0.0000001",
    "ticker_period = 1e10",
    "database_list = ,,,",
    "database_list = a  # comment",
    "logfile = ~no_such_user_x/l.log",
    "syslog = 0x",
    "= x",
    "key",
    "pgqd = 1",
    "[pgqd.sub]",
    "[[pgqd]]",
    "database_list = [1, \"\"]",
    "ticker_period = nan",
    "x = {a = 1}",
    "\"ticker_period\" = \"2\"",
    "stats_period = \"1s\"",
];

/// One edit of a config text, given as line operations.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    Insert(usize, String),
    Bytes(usize, usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let line = prop_oneof![
        prop::sample::select(LINES).prop_map(str::to_string),
        "[ -~\t\r\u{1}\u{7f}é]{0,40}",
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), line).prop_map(|(at, l)| Edit::Insert(at, l)),
        (
            any::<usize>(),
            any::<usize>(),
            "['\"\\\\=#;\\[\\] \t\r\u{0}x,.]{1,4}"
        )
            .prop_map(|(at, pos, b)| Edit::Bytes(at, pos, b)),
    ]
}

/// Applies `edits` to `text`; byte edits leave the base_connstr lines alone, so that
/// the password stays a password (the connstr strategy varies those lines).
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for edit in edits {
        let pick = |at: usize, len: usize| at % len.max(1);
        match edit.clone() {
            Edit::Delete(at) if !lines.is_empty() => {
                lines.remove(pick(at, lines.len()));
            }
            Edit::Duplicate(at) if !lines.is_empty() => {
                let at = pick(at, lines.len());
                lines.insert(at, lines[at].clone());
            }
            Edit::Insert(at, line) => lines.insert(pick(at, lines.len() + 1), line),
            Edit::Bytes(at, pos, bytes) if !lines.is_empty() => {
                let at = pick(at, lines.len());
                let line = &mut lines[at];
                if !line.contains("password") {
                    let mut pos = pick(pos, line.len() + 1);
                    while !line.is_char_boundary(pos) {
                        pos -= 1;
                    }
                    line.insert_str(pos, &bytes);
                }
            }
            _ => {}
        }
    }
    lines.join("\n") + "\n"
}

/// The sample with every setting uncommented, base_connstr last.
fn seed(sample: &str, connstr_line: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = std::fs::read_to_string(root.join(sample)).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.contains("base_connstr"))
        .map(|l| {
            l.strip_prefix('#')
                .filter(|l| l.contains(" = "))
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{text}{connstr_line}\n")
}

/// Everything a user would read about this input: the error, or the warnings and
/// the `--check` listing.
fn outcome(result: Result<Loaded, ConfigError>) -> String {
    match result {
        Err(error) => error.to_string(),
        Ok(loaded) => {
            let mut text = loaded.config.explained(&loaded.origins);
            for warning in &loaded.warnings {
                text.push_str(&format!("{} ({})\n", warning.message, warning.origin));
            }
            text
        }
    }
}

/// Loads `text` as the file `name` in `dir` with `env`, within the deadline, and
/// returns what a user would read.
fn run(dir: &Path, name: &str, text: &[u8], env: Vec<(OsString, OsString)>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let shown = outcome(load_with_env(&path, env));
    assert!(started.elapsed() < CASE_DEADLINE, "slow case: {text:?}");
    shown
}

/// Arbitrary bytes as pgqd.ini or TOML: an error or a config, never a panic.
#[test]
fn arbitrary_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = prop::collection::vec(any::<u8>(), 0..1500);
    runner(1500)
        .run(&(bytes, any::<bool>()), |(bytes, toml)| {
            let name = if toml { "f.toml" } else { "f.ini" };
            run(dir.path(), name, &bytes, Vec::new());
            Ok(())
        })
        .unwrap();
}

/// Mutations of the samples: no panic, and the password never shows.
#[test]
fn mutated_samples_hide_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cases = secret().prop_flat_map(|secret| {
        let edits = prop::collection::vec(edit(), 0..8);
        (Just(secret.clone()), connstr(&secret), edits, any::<bool>())
    });
    runner(2000)
        .run(&cases, |(secret, connstr, edits, toml)| {
            let (sample, name, line) = if toml {
                let quoted = connstr.replace('\\', "\\\\").replace('"', "\\\"");
                (
                    "pgqd.toml",
                    "f.toml",
                    format!("base_connstr = \"{quoted}\""),
                )
            } else {
                ("pgqd.ini", "f.ini", format!("base_connstr = {connstr}"))
            };
            let text = mutate(&seed(sample, &line), &edits);
            let shown = run(dir.path(), name, text.as_bytes(), Vec::new());
            prop_assert!(!shown.contains(&secret), "{text}\n---\n{shown}");
            Ok(())
        })
        .unwrap();
}

/// PGQD_* variables with arbitrary names and values (the password in
/// PGQD_BASE_CONNSTR): no panic, and the password never shows.
#[test]
fn environment_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = known_keys()
        .iter()
        .map(|k| format!("PGQD_{}", k.to_uppercase()))
        .collect();
    names.extend([
        "PGQD_".into(),
        "PGQD_X".into(),
        "PGQD_BASE_CONNSTR_FILE".into(),
    ]);
    let var = (prop::sample::select(names), "[ -~\t\r\n\u{1}é]{0,30}");
    let cases = secret().prop_flat_map(|secret| {
        let vars = prop::collection::vec(var.clone(), 0..6);
        (Just(secret.clone()), connstr(&secret), vars)
    });
    runner(1000)
        .run(&cases, |(secret, connstr, vars)| {
            let mut env: Vec<(OsString, OsString)> = vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            env.push(("PGQD_BASE_CONNSTR".into(), connstr.clone().into()));
            let shown = run(dir.path(), "f.ini", b"[pgqd]\n", env);
            prop_assert!(!shown.contains(&secret), "{connstr}\n---\n{shown}");
            Ok(())
        })
        .unwrap();
}
