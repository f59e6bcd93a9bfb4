//! The harness itself: a throwaway cluster with pgq works.

use crate::harness::Cluster;

/// A database with pgq can hold a queue, and an event inserted into it is stored.
#[test]
fn harness_creates_pgq_database() {
    let cluster = Cluster::shared();
    let db = cluster.create_pgq_db("harness");
    let mut client = cluster.connect(&db);
    client
        .batch_execute(
            "select pgq.create_queue('q1'); select pgq.insert_event('q1', 'type', 'data')",
        )
        .unwrap();
    let queue: String = client
        .query_one("select queue_name from pgq.get_queue_info()", &[])
        .unwrap()
        .get(0);
    assert_eq!(queue, "q1");
    let data: String = client
        .query_one("select ev_data from pgq.event_template", &[])
        .unwrap()
        .get(0);
    assert_eq!(data, "data");
}
