//! Hostile database names: served like any other, shown bracketed and safe in the log.

use crate::harness::{Cluster, Daemon, unique};

use super::{all_ticks, detecting, eager_queue, ident, install_pgq, serving, wait_for};

/// Creates a database named `name` with pgq and an eagerly ticked queue.
fn create_pgq_db_named(cluster: &Cluster, name: &str) {
    cluster.exec("postgres", &format!("create database {}", ident(name)));
    install_pgq(cluster, name);
    eager_queue(cluster, name, "q");
}

/// A database named with a double quote, spaces, `#` and non-ASCII letters, given in
/// database_list, is ticked, and the log shows its name bracketed as is.
#[test]
fn quote_space_hash_unicode_name_is_served() {
    let cluster = Cluster::shared();
    let name = format!("we\"ird db #1 ü {}", unique("n"));
    create_pgq_db_named(cluster, &name);
    let daemon = Daemon::start(&serving(cluster, &[&name], &["ticker_period = 0.2"]));
    daemon.wait_for_log(&format!("LOG [{name}]: pgq version ok: 3.5"));
    wait_for(&daemon, "ticks in the oddly named database", || {
        all_ticks(cluster, &name) > 2
    });
}

/// Auto-detected databases named with a newline, a backslash, a single quote and `=`
/// (which conninfo strings would need escaped) are ticked; the log shows the newline
/// as `?` inside the brackets, so a name cannot forge a log line.
#[test]
fn newline_backslash_quote_names_are_served() {
    let cluster = Cluster::start();
    let names = [
        format!("line\nbreak {}", unique("n")),
        format!("back\\slash 'q' dbname=x {}", unique("n")),
    ];
    for name in &names {
        create_pgq_db_named(&cluster, name);
    }
    let daemon = Daemon::start(&detecting(
        &cluster,
        "postgres",
        &["ticker_period = 0.2", "check_period = 0.5"],
    ));
    for name in &names {
        let shown = name.replace('\n', "?");
        daemon.wait_for_log(&format!("LOG [{shown}]: pgq version ok: 3.5"));
        wait_for(&daemon, &format!("ticks in {name:?}"), || {
            all_ticks(&cluster, name) > 2
        });
    }
}
