//! The reference pages against the code, so they cannot drift: the key table of
//! `docs/configuration.md` and the man page against the config's key table, the metric
//! table of `docs/monitoring.md` against a running daemon's `/metrics`, and every
//! relative link of the README and `docs/` against the files it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};

use crate::engine::{check, eager_queue, pgq_db, serving};
use crate::harness::{Cluster, DEADLINE, Daemon, free_port, poll, unique};
use crate::observability::{Exposition, listen_on, metrics, request};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of the first markdown table under the line `heading` of `page`, header and
/// separator left out, each as its trimmed cells.
fn table(page: &str, heading: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = page
        .lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let inner = line.trim_matches('|');
            inner
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "no table under {heading:?}");
    rows.into_iter().skip(2).collect()
}

/// The text between backticks of a cell that is one code span.
fn code(cell: &str) -> &str {
    cell.strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or_else(|| panic!("not one code span: {cell:?}"))
}

/// Panics listing how `documented` (what `page` says) differs from `actual`.
fn assert_same<V: PartialEq + Debug>(
    page: &str,
    documented: &BTreeMap<String, V>,
    actual: &BTreeMap<String, V>,
    actual_name: &str,
) {
    let mut differences = Vec::new();
    for (name, value) in actual {
        match documented.get(name) {
            None => differences.push(format!("{name}: missing from {page}")),
            Some(doc) if doc != value => differences.push(format!(
                "{name}: {page} says {doc:?}, {actual_name} says {value:?}"
            )),
            Some(_) => {}
        }
    }
    for name in documented.keys().filter(|name| !actual.contains_key(*name)) {
        differences.push(format!("{name}: in {page} but not in {actual_name}"));
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// The code's keys with their defaults as the pages write them: an empty default
/// as `empty`.
fn code_keys() -> BTreeMap<String, String> {
    pgqd::config::key_defaults()
        .into_iter()
        .map(|(key, default)| {
            let default = if default.is_empty() { "empty" } else { default };
            (key.to_string(), default.to_string())
        })
        .collect()
}

/// A page's default cell (`empty: no log file`, `60`) as [`code_keys`] writes it.
fn default_of(cell: &str) -> String {
    let word = cell.split([':', ',', ' ']).next().unwrap_or_default();
    word.trim_end_matches('.').to_string()
}

/// `docs/configuration.md`'s key table names every key of the config's key table, no
/// other, each once, with the code's default.
#[test]
fn configuration_page_lists_every_key_with_its_default() {
    let rows = table(&read("docs/configuration.md"), "## Keys");
    let documented: BTreeMap<String, String> = rows
        .iter()
        .map(|row| (code(&row[0]).to_string(), default_of(&row[1])))
        .collect();
    assert_eq!(documented.len(), rows.len(), "a key listed twice");
    assert_same(
        "docs/configuration.md",
        &documented,
        &code_keys(),
        "the key table",
    );
}

/// The man page's CONFIGURATION section describes every key, no other, each once,
/// with the code's default.
#[test]
fn man_page_lists_every_key_with_its_default() {
    let man = read("packaging/pgqd.1");
    let section = man
        .split("\n.SH ")
        .find(|s| s.starts_with("CONFIGURATION"))
        .expect("a CONFIGURATION section");
    let mut documented = BTreeMap::new();
    let entries: Vec<&str> = section.split("\n.TP\n").skip(1).collect();
    for entry in &entries {
        let (first, text) = entry.split_once('\n').unwrap_or((entry, ""));
        let key = first
            .strip_prefix(".B ")
            .expect("an entry starts with .B KEY");
        let text = text.replace('\n', " ");
        let default = text
            .split_once("Default: ")
            .map(|(_, rest)| default_of(rest))
            .unwrap_or_else(|| panic!("{key}: no \"Default: \""));
        documented.insert(key.to_string(), default);
    }
    assert_eq!(documented.len(), entries.len(), "a key described twice");
    assert_same(
        "packaging/pgqd.1",
        &documented,
        &code_keys(),
        "the key table",
    );
}

/// A metric family as a page documents it: its type and label names.
type Families = BTreeMap<String, (String, BTreeSet<String>)>;

/// The families of `/metrics`, named as queried (a counter with `_total`), with the
/// label names of their samples (a histogram's `le` left out).
fn served(page: &Exposition) -> Families {
    let mut families = Families::new();
    for (family, kind) in &page.families {
        let name = match kind.as_str() {
            "counter" => format!("{family}_total"),
            _ => family.clone(),
        };
        let labels = page
            .samples
            .iter()
            .filter(|s| page.family_of(&s.name) == Some(family.as_str()))
            .flat_map(|s| s.labels.keys().filter(|l| *l != "le").cloned())
            .collect();
        families.insert(name, (kind.clone(), labels));
    }
    families
}

/// The metric table's first cell, `` `name{a,b}` ``, and type.
fn documented(row: &[String]) -> (String, (String, BTreeSet<String>)) {
    let cell = code(&row[0]);
    let (name, labels) = match cell.split_once('{') {
        Some((name, labels)) => (name, labels.trim_end_matches('}')),
        None => (cell, ""),
    };
    let labels = labels
        .split(',')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (name.to_string(), (row[1].clone(), labels))
}

/// The families of `page` that have no sample yet.
fn without_samples(page: &Exposition) -> Vec<String> {
    let sampled: BTreeSet<&str> = page
        .samples
        .iter()
        .filter_map(|s| page.family_of(&s.name))
        .collect();
    page.families
        .keys()
        .filter(|family| !sampled.contains(family.as_str()))
        .cloned()
        .collect()
}

/// `docs/monitoring.md`'s metric table names every family `/metrics` serves, no
/// other, with its type and its labels. The daemon serves a database with a queue (its
/// tables due for rotation every second, so maintenance has operations to count) and a
/// consumer, and one database that does not exist (errors), so every family has
/// samples to read labels from; the `pgqd_databases` row names every state.
#[test]
fn monitoring_page_lists_every_metric_family() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "docs");
    eager_queue(cluster, &db, "q");
    cluster.exec(
        &db,
        "select pgq.register_consumer('q', 'c');
         select pgq.set_queue_config('q', 'rotation_period', '1 second')",
    );
    let missing = unique("missing");
    let port = free_port();
    let daemon = Daemon::start(&serving(
        cluster,
        &[&db, &missing],
        &[
            "ticker_period = 0.2",
            "maint_period = 0.5",
            "queue_stats_period = 1",
            &listen_on(port),
        ],
    ));
    let mut unsampled = Vec::new();
    let sampled = poll(DEADLINE, || {
        let page = request(port, "GET", "/metrics").and_then(|r| Exposition::parse(&r.body).ok());
        unsampled = page
            .as_ref()
            .map_or(vec!["/metrics".into()], without_samples);
        unsampled.is_empty()
    });
    check(&daemon, sampled, &format!("no samples of {unsampled:?}"));
    let page = metrics(port);
    let rows = table(&read("docs/monitoring.md"), "## Metrics");
    let doc: Families = rows.iter().map(|row| documented(row)).collect();
    assert_eq!(doc.len(), rows.len(), "a metric listed twice");
    assert_same("docs/monitoring.md", &doc, &served(&page), "/metrics");

    let states_row = rows
        .iter()
        .find(|row| row[0].starts_with("`pgqd_databases{"))
        .expect("a pgqd_databases row");
    for sample in page.named("pgqd_databases") {
        let state = format!("`{}`", sample.labels["state"]);
        assert!(
            states_row[2].contains(&state),
            "{state} not in {states_row:?}"
        );
    }
}

/// The anchors GitHub gives the headings of a markdown page.
fn anchors(page: &str) -> BTreeSet<String> {
    let mut seen = BTreeMap::<String, usize>::new();
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in page.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !in_code) else {
            continue;
        };
        let slug: String = heading
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let count = seen.entry(slug.clone()).or_default();
        anchors.insert(match *count {
            0 => slug.clone(),
            n => format!("{slug}-{n}"),
        });
        *count += 1;
    }
    anchors
}

/// The relative link targets of a markdown page: `[text](target)`, web links left out.
fn links(page: &str) -> Vec<&str> {
    page.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target))
        .filter(|target| !target.contains("://") && !target.starts_with("mailto:"))
        .collect()
}

/// Every relative link of README.md and `docs/*.md` names an existing file, and an
/// anchor names a heading of that page.
#[test]
fn every_relative_link_resolves() {
    let mut pages = vec![root().join("README.md")];
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page).unwrap();
        for link in links(&text) {
            if let Err(why) = resolve(page, link) {
                broken.push(format!("{}: ({link}): {why}", page.display()));
            }
        }
    }
    assert!(pages.len() > 5, "the pages: {pages:?}");
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Checks that `link` of `page` names a file, and a heading when it has an anchor.
fn resolve(page: &Path, link: &str) -> Result<(), String> {
    let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
    let target = match path {
        "" => page.to_path_buf(),
        path => page.parent().unwrap().join(path),
    };
    if !target.exists() {
        return Err("no such file".into());
    }
    if anchor.is_empty() {
        return Ok(());
    }
    let text = fs::read_to_string(&target).map_err(|e| e.to_string())?;
    if anchors(&text).contains(anchor) {
        Ok(())
    } else {
        Err("no such heading".into())
    }
}
