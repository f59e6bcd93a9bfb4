//! pgqd behind a real pgbouncer in transaction mode: each transaction may run on another
//! server backend, so a session-level leader lock cannot hold. The pooler guard sees it
//! (a ticker call ran on another backend than the lock's), says so in one line, and
//! ticks without the lock, as pgqd 3.5 would.

use std::fs;
use std::net::TcpStream;

use crate::engine::{check, eager_queue, lines_with, pgq_db, serving, wait_for};
use crate::harness::{
    Cluster, Daemon, KillOnDrop, as_postgres, free_port, give_to_postgres, require_tool, wait_until,
};

/// A pgbouncer of its own in transaction mode on 127.0.0.1, forwarding every database
/// to `cluster` as postgres, with two server connections used in turn (round robin),
/// so consecutive transactions of one client run on different backends.
struct Bouncer {
    port: u16,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    fn start(cluster: &Cluster) -> Bouncer {
        require_tool("pgbouncer", "--version", "pgbouncer");
        let dir = tempfile::tempdir().unwrap();
        give_to_postgres(dir.path());
        let port = free_port();
        let config = dir.path().join("pgbouncer.ini");
        fs::write(
            &config,
            format!(
                "[databases]
* = host={host} port={pgport} user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 4
min_pool_size = 2
server_round_robin = 1
ignore_startup_parameters = extra_float_digits
logfile = {log}
",
                host = cluster.dir.display(),
                pgport = cluster.port,
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        let child = KillOnDrop(as_postgres("pgbouncer").arg(&config).spawn().unwrap());
        wait_until("pgbouncer listening", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Bouncer {
            port,
            _child: child,
            _dir: dir,
        }
    }
}

/// Through pgbouncer in transaction mode: one line says the leader lock means nothing
/// here and that pgqd ticks without it, and ticking goes on.
#[test]
fn transaction_pooler_is_seen_and_ticking_goes_on() {
    let cluster = Cluster::shared();
    let db = pgq_db(cluster, "pooled");
    eager_queue(cluster, &db, "q");
    let bouncer = Bouncer::start(cluster);
    let through_bouncer = serving(cluster, &[&db], &["ticker_period = 0.2"]).replace(
        &cluster.connstr(),
        &format!("host=127.0.0.1 port={} user=postgres", bouncer.port),
    );
    let daemon = Daemon::start(&through_bouncer);
    let guard = "a pooler in transaction mode sits between pgqd and the server";
    daemon.wait_for_log(guard);

    let mut client = cluster.connect(&db);
    let mut ticks = || -> i64 {
        client
            .query_one(
                "select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'q'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let before = ticks();
    wait_for(&daemon, "ten more ticks through pgbouncer", || {
        ticks() >= before + 10
    });
    let output = daemon.output();
    check(
        &daemon,
        lines_with(&output, &[guard]) == 1,
        "the pooler is reported once",
    );
}
