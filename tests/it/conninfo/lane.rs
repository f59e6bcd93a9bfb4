//! The connection's lane (`pgconninfo::Lane`): a statement written and its reply read
//! straight off the socket, with tokio-postgres' connection task standing by. Against
//! the shared cluster, over its unix socket.

use std::time::Duration;

use pgconninfo::{Connected, LaneError, SimpleQuery};

use super::{block, connect, value};
use crate::harness::{Cluster, wait_until};

fn open() -> Connected {
    let home = tempfile::tempdir().unwrap();
    let connected = connect(home.path(), &Cluster::shared().connstr(), "postgres", &[]).unwrap();
    assert!(
        connected.lane.is_some(),
        "a unix-socket connection has a lane"
    );
    connected
}

/// The first row's columns as text (`None` for NULL), or `None` without a row.
fn first_row(
    connected: &mut Connected,
    sql: &str,
) -> Result<Option<Vec<Option<String>>>, LaneError> {
    let query = SimpleQuery::new(sql).unwrap();
    let lane = connected.lane.as_mut().unwrap();
    block(async {
        let row = lane.first_row(&query).await?;
        Ok(row.map(|row| (0..3).map(|i| row.get(i).map(str::to_string)).collect()))
    })
}

fn texts(values: &[Option<&str>]) -> Option<Vec<Option<String>>> {
    Some(values.iter().map(|v| v.map(str::to_string)).collect())
}

/// Lane exchanges and client queries take turns on one connection and each gets its
/// own reply: the protocol stays in step. NULL and a missing column read as `None`;
/// a statement without rows gives no row; with several statements, the first row of
/// the reply wins; a notice in the reply is skipped.
#[test]
fn lane_and_client_take_turns() {
    let mut connected = open();
    for round in 0..50 {
        let row = first_row(&mut connected, &format!("select {round}, null")).unwrap();
        assert_eq!(row, texts(&[Some(&round.to_string()), None, None]));
        assert_eq!(
            value(&connected, &format!("select {round} + 1")),
            (round + 1).to_string()
        );
    }
    assert_eq!(
        first_row(&mut connected, "select 1 where false").unwrap(),
        None
    );
    let notice = "do $$ begin raise notice 'hello'; end $$; select 'a', 'b', 'c'; select 'z'";
    assert_eq!(
        first_row(&mut connected, notice).unwrap(),
        texts(&[Some("a"), Some("b"), Some("c")])
    );
    assert_eq!(value(&connected, "select 'after'"), "after");
}

/// A server error comes back with its SQLSTATE and message, and the connection stays
/// usable for both the lane and the client.
#[test]
fn lane_reports_server_errors_and_stays_usable() {
    let mut connected = open();
    let error = first_row(&mut connected, "select 1/0").unwrap_err();
    let LaneError::Server(error) = error else {
        panic!("not a server error: {error}");
    };
    assert_eq!(error.code.code(), "22012", "{error}");
    assert!(
        error.to_string().starts_with("22012: division by zero"),
        "{error}"
    );
    let missing = first_row(&mut connected, "select pgq_nothing_here()").unwrap_err();
    assert!(missing.to_string().contains("42883"), "{missing}");
    assert_eq!(
        first_row(&mut connected, "select 7").unwrap(),
        texts(&[Some("7"), None, None])
    );
    assert_eq!(value(&connected, "select 8"), "8");
}

/// After a lane exchange, the connection task still watches the socket: the server
/// closing an idle connection (`pg_terminate_backend`) shows as `is_closed()`, as it
/// does without a lane, and the lane then fails with the server's SQLSTATE or as lost.
#[test]
fn server_close_is_seen_after_lane_exchanges() {
    let mut connected = open();
    // A client query first, so the connection task waits on the socket; then the
    // short sleep makes the lane wait for its reply too, taking the socket's read
    // interest from the connection task.
    assert_eq!(value(&connected, "select 1"), "1");
    let pid = first_row(&mut connected, "select pg_backend_pid(), pg_sleep(0.1)")
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap();
    assert!(!connected.client.is_closed());
    Cluster::shared().exec("postgres", &format!("select pg_terminate_backend({pid})"));
    wait_until("the client to see the connection closed", || {
        block(async { tokio::time::sleep(Duration::from_millis(50)).await });
        connected.client.is_closed()
    });
    let error = first_row(&mut connected, "select 1").unwrap_err();
    let lost = matches!(error, LaneError::Lost(_))
        || matches!(&error, LaneError::Server(e) if e.code.code() == "57P01");
    assert!(lost, "{error}");
}
