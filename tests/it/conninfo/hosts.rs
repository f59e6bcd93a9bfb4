//! Where to connect: the environment alone, URIs and key=value strings, several
//! hosts with one down, and `target_session_attrs` choosing among servers.

use super::{connect, value};
use crate::harness::Cluster;

/// An empty base_connstr with PGHOST (and PGPORT, PGUSER) pointing at the test
/// socket directory connects, with application_name defaulting to pgqd.
#[test]
fn empty_base_connstr_with_pghost() {
    let cluster = Cluster::start();
    let home = tempfile::tempdir().unwrap();
    let (dir, port) = (cluster.dir.display().to_string(), cluster.port.to_string());
    let vars = [
        ("PGHOST", dir.as_str()),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
    ];
    let connected = connect(home.path(), "", "postgres", &vars).unwrap();
    assert_eq!(
        value(&connected, "select current_setting('application_name')"),
        "pgqd"
    );
    assert_eq!(value(&connected, "select current_setting('port')"), port);
}

/// A URI and a key=value string for the same settings reach the same server, and a
/// database name with a space, quotes and `#` works with both (pgqd 3.5 pastes it in).
#[test]
fn uri_and_key_value_reach_the_same_server() {
    let cluster = Cluster::start();
    let db = cluster.create_db("odd name 'q' #");
    let home = tempfile::tempdir().unwrap();
    let socket = cluster.dir.display().to_string().replace('/', "%2F");
    let uri = format!(
        "postgresql://postgres@{socket}:{}/ignored?application_name=via%20uri",
        cluster.port
    );
    let key_value = format!(
        "host='{}' port={} user=postgres",
        cluster.dir.display(),
        cluster.port
    );
    let sql = "select system_identifier::text || current_database() from pg_control_system()";
    let by_uri = connect(home.path(), &uri, &db, &[]).unwrap();
    let by_pairs = connect(home.path(), &key_value, &db, &[]).unwrap();
    assert_eq!(value(&by_uri, sql), value(&by_pairs, sql));
    assert!(value(&by_uri, sql).ends_with(&db));
    assert_eq!(
        value(&by_uri, "select current_setting('application_name')"),
        "via uri"
    );
}

/// Two hosts, the first down (a socket directory with no server):
/// `target_session_attrs=read-write` ends on the live one. With both down, the error
/// names both hosts.
#[test]
fn two_hosts_first_down() {
    let cluster = Cluster::start();
    let home = tempfile::tempdir().unwrap();
    let dead = tempfile::tempdir().unwrap();
    let base = format!(
        "host={},{} port={} user=postgres target_session_attrs=read-write",
        dead.path().display(),
        cluster.dir.display(),
        cluster.port
    );
    let connected = connect(home.path(), &base, "postgres", &[]).unwrap();
    assert_eq!(value(&connected, "show transaction_read_only"), "off");

    let base = format!("host={0},{0} port=1,2 user=postgres", dead.path().display());
    let error = connect(home.path(), &base, "postgres", &[])
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains(".s.PGSQL.1\" failed") && error.contains(".s.PGSQL.2\" failed"),
        "{error}"
    );
}

/// `target_session_attrs` picks among servers by their state, each mode given the
/// server it must skip first: read-write skips a read-only server, read-only a
/// writable one, primary a hot standby, prefer-standby a primary (for a standby
/// listed after it); any takes the first; standby finds none among primaries and
/// says why.
#[test]
fn target_session_attrs_choose_the_server() {
    let writable = Cluster::start();
    let read_only = Cluster::start_with(&["default_transaction_read_only = on"]);
    let standby = Cluster::standby_of(&writable);
    let home = tempfile::tempdir().unwrap();
    let hosts = |servers: [&Cluster; 2], attrs: &str| {
        format!(
            "host={},{} port={},{} user=postgres target_session_attrs={attrs}",
            servers[0].dir.display(),
            servers[1].dir.display(),
            servers[0].port,
            servers[1].port
        )
    };
    let port_of = |servers: [&Cluster; 2], attrs: &str| {
        let connected = connect(home.path(), &hosts(servers, attrs), "postgres", &[])
            .unwrap_or_else(|e| panic!("{attrs}: {e}"));
        value(&connected, "select current_setting('port')")
    };
    let port = |cluster: &Cluster| cluster.port.to_string();
    let cases = [
        ("read-write", [&read_only, &writable], &writable),
        ("read-only", [&writable, &read_only], &read_only),
        ("any", [&read_only, &writable], &read_only),
        ("primary", [&standby, &read_only], &read_only),
        ("prefer-standby", [&writable, &standby], &standby),
        ("standby", [&writable, &standby], &standby),
    ];
    let wrong: Vec<String> = (cases.into_iter())
        .filter_map(|(attrs, servers, expected)| {
            let got = port_of(servers, attrs);
            (got != port(expected)).then(|| format!("{attrs}: port {got}, not {}", expected.port))
        })
        .collect();
    assert!(wrong.is_empty(), "servers chosen wrongly: {wrong:?}");
    let error = connect(
        home.path(),
        &hosts([&read_only, &writable], "standby"),
        "postgres",
        &[],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        error.contains("server is not in hot standby mode"),
        "{error}"
    );
}
