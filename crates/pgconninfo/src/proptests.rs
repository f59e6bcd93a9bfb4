//! Property tests of the readers of untrusted text: the key=value and URI parsers, the
//! password file matcher and the service file reader, with arbitrary text and with
//! mutations of valid inputs. Each case checks that nothing panics, that each call
//! returns promptly, and that the value of a secret key never shows in an error, in
//! `Display` or in `Debug`.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;

use super::passfile::{Wanted, match_line};
use super::settings::Conninfo;
use super::*;

/// Far more than any of these linear readers needs for inputs this small: only a
/// hang or a blow-up fails it.
const PROMPT: Duration = Duration::from_secs(2);

/// Runs `f`, asserting that it returns promptly.
fn timed<T>(what: &str, input: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < PROMPT,
        "{what} took {:?} on {input:?}",
        start.elapsed()
    );
    out
}

/// Everything a user or a log line can see of `text` as `base_connstr`: `Display`,
/// `Debug`, the errors of validation, parsing and resolution, and `Debug` of what
/// parses. Also exercises every reader on it.
fn everything_shown(text: &str) -> String {
    let base = ConnStr::new(text);
    let home = tempfile::tempdir().unwrap();
    let home_dir = home.path().display().to_string();
    let env =
        move |name: &str| (name == "HOME" || name == "PGSYSCONFDIR").then(|| home_dir.clone());
    let defaults = Defaults {
        application_name: "pgqd".into(),
        connect_timeout: Duration::from_secs(1),
    };
    let mut shown = timed("display", text, || format!("{base} {base:?}"));
    timed("has_password", text, || base.has_password());
    let mut note = |result: Result<String, ConnInfoError>| match result {
        Ok(debug) => shown.push_str(&debug),
        Err(e) => shown.push_str(&format!("{e} {e:?}")),
    };
    note(timed("validate", text, || {
        validate(&base).map(|()| String::new())
    }));
    note(timed("parse", text, || {
        Conninfo::parse(text).map(|c| format!("{c:?}"))
    }));
    note(timed("resolve", text, || {
        resolve_with(&base, "db", &defaults, &env).map(|t| format!("{t:?}"))
    }));
    shown
}

/// Keys libpq knows, and arbitrary words.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(keys::KEYS.iter().map(|k| k.name).collect::<Vec<_>>()).prop_map(String::from),
        "[a-zA-Z_]{1,12}",
    ]
}

/// Short values, rich in the characters the readers treat specially.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9 '\\\\=%&?@:,/\\[\\]#]{0,12}", "\\PC{0,8}"]
}

/// Keys whose values are secret: libpq's, and others named like them.
fn secret_key() -> impl Strategy<Value = String> {
    let like = [
        "PASSWORD",
        "PassWord",
        "db_passwd",
        "my_secret",
        "Scram_Client_Key",
        "pwd",
    ];
    let all: Vec<&str> = keys::SECRET_KEYS.iter().chain(&like).copied().collect();
    select(all).prop_map(String::from)
}

/// A value that only a leak could reproduce.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{10,16}"
}

/// A key=value pair as libpq reads it: quoted, or bare with backslash escapes.
fn pair(key: &str, value: &str, quoted: bool) -> String {
    let special = |c: char| c == '\\' || c == '\'' || c.is_ascii_whitespace();
    let escaped: String = value
        .chars()
        .flat_map(|c| special(c).then_some('\\').into_iter().chain([c]))
        .collect();
    match quoted || value.is_empty() {
        true => format!(
            "{key}='{}'",
            value.replace('\\', "\\\\").replace('\'', "\\'")
        ),
        false => format!("{key}={escaped}"),
    }
}

/// A valid key=value string of a few pairs.
fn key_values() -> impl Strategy<Value = String> {
    prop::collection::vec((any_key(), any_value(), any::<bool>()), 0..6).prop_map(|pairs| {
        let pairs: Vec<String> = pairs.iter().map(|(k, v, q)| pair(k, v, *q)).collect();
        pairs.join(" ")
    })
}

/// Percent-encodes everything but letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b.is_ascii_alphanumeric() {
            true => (b as char).to_string(),
            false => format!("%{b:02X}"),
        })
        .collect()
}

/// A valid URI: user, hosts with ports, database and query parameters.
fn uri() -> impl Strategy<Value = String> {
    let hosts = prop::collection::vec(("[a-z0-9.]{0,8}", prop::option::of(1u16..)), 1..3);
    let query = prop::collection::vec((any_key(), any_value()), 0..4);
    (prop::option::of("[a-z]{1,8}"), hosts, "\\PC{0,8}", query).prop_map(
        |(user, hosts, db, query)| {
            let hosts: Vec<String> = (hosts.iter())
                .map(|(h, p)| format!("{h}{}", p.map(|p| format!(":{p}")).unwrap_or_default()))
                .collect();
            let query: Vec<String> = (query.iter())
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            let user = user.map(|u| format!("{u}@")).unwrap_or_default();
            format!(
                "postgresql://{user}{}/{}?{}",
                hosts.join(","),
                encode(&db),
                query.join("&")
            )
        },
    )
}

/// One edit of a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, char),
    Delete(usize, usize),
    /// Repeats a stretch (a duplicated key, an extra quote...).
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = select(vec![
        '\'', '\\', '=', ' ', '%', '&', '?', '@', ':', '/', ',', '[', ']', '#', '\n', 'é',
    ]);
    prop_oneof![
        (any::<usize>(), special).prop_map(|(at, c)| Mutation::Insert(at, c)),
        (any::<usize>(), 1..4usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), 1..12usize).prop_map(|(at, n)| Mutation::Repeat(at, n)),
    ]
}

/// Applies `edits` to `text`, positions taken modulo its length in characters.
fn mutate(text: &str, edits: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let at = |i: usize| {
            if chars.is_empty() {
                0
            } else {
                i % (chars.len() + 1)
            }
        };
        match *edit {
            Mutation::Insert(i, c) => {
                let i = at(i);
                chars.insert(i, c);
            }
            Mutation::Delete(i, n) => {
                let i = at(i);
                chars.drain(i..(i + n).min(chars.len()));
            }
            Mutation::Repeat(i, n) => {
                let i = at(i);
                let copy: Vec<char> = chars[i..(i + n).min(chars.len())].to_vec();
                chars.splice(i..i, copy);
            }
        }
    }
    chars.into_iter().collect()
}

/// Escapes a password file field.
fn field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Arbitrary text, as key=value or after a URI prefix, never panics or hangs.
    #[test]
    fn arbitrary_text(text in "\\PC{0,60}", prefix in select(vec!["", "postgresql://", "postgres://u:"])) {
        everything_shown(&format!("{prefix}{text}"));
    }

    /// Mutated valid key=value strings and URIs never panic or hang.
    #[test]
    fn mutated_inputs(kv in key_values(), uri in uri(), edits in prop::collection::vec(mutation(), 1..5)) {
        everything_shown(&mutate(&kv, &edits));
        everything_shown(&mutate(&uri, &edits));
    }

    /// A secret in a key=value string, before or after other pairs, quoted or not,
    /// followed by anything, never shows.
    #[test]
    fn key_value_secret_never_shows(
        before in key_values(), key in secret_key(), secret in secret(),
        quoted in any::<bool>(), after in key_values(), tail in "\\PC{0,12}",
    ) {
        let text = format!("{before} {} {after}{tail}", pair(&key, &secret, quoted));
        let shown = everything_shown(&text);
        prop_assert!(!shown.contains(&secret), "{text:?} shows its secret: {shown}");
    }

    /// A secret in a URI's user info or query, followed by anything, never shows.
    #[test]
    fn uri_secret_never_shows(uri in uri(), key in secret_key(), secret in secret(), in_query in any::<bool>(), tail in "\\PC{0,12}") {
        let text = match in_query {
            true => format!("{uri}&{}={secret}{tail}", encode(&key)),
            false => uri.replacen("://", &format!("://me:{secret}@"), 1) + &tail,
        };
        let shown = everything_shown(&text);
        prop_assert!(!shown.contains(&secret), "{text:?} shows its secret: {shown}");
    }

    /// A password file line made of escaped fields matches exactly those fields and
    /// gives the password back; arbitrary lines never panic.
    #[test]
    fn passfile_lines(fields in prop::array::uniform4("[a-z:\\\\*#]{1,6}"), password in "[a-z:\\\\ ]{1,8}", line in "\\PC{0,40}") {
        let wanted = Wanted { host: &fields[0], port: &fields[1], dbname: &fields[2], user: &fields[3] };
        timed("passfile", &line, || match_line(&line, &wanted));
        let escaped: Vec<String> = fields.iter().map(|f| field(f)).collect();
        let line = format!("{}:{}", escaped.join(":"), field(&password));
        let expected = (!line.starts_with('#')).then_some(password);
        prop_assert_eq!(match_line(&line, &wanted), expected);
    }

    /// Arbitrary and mutated service files never panic; the value of a password line
    /// is never in their errors, nor in what resolving with them shows.
    #[test]
    fn service_files(text in "\\PC{0,80}", secret in secret(), edits in prop::collection::vec(mutation(), 0..4)) {
        // The password's line is added after the edits: they must not make it
        // another key's value.
        let file = mutate(&format!("[s]\nhost=h\n[t]\nport=1\n{text}"), &edits);
        let file = file.replacen("[s]\n", &format!("[s]\npassword={secret}\n"), 1);
        for name in ["s", "t", "u"] {
            if let Err(e) = timed("service file", &file, || service::section(&file, name, Path::new("/f"))) {
                prop_assert!(!format!("{e} {e:?}").contains(&secret), "{e}");
            }
        }
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".pg_service.conf"), &file).unwrap();
        let home = home.path().display().to_string();
        let env = move |name: &str| (name == "HOME" || name == "PGSYSCONFDIR").then(|| home.clone());
        let defaults = Defaults { application_name: "pgqd".into(), connect_timeout: Duration::ZERO };
        let shown = match resolve_with(&ConnStr::new("service=s"), "db", &defaults, &env) {
            Ok(target) => format!("{target:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&secret), "{shown}");
    }
}
