//! The benchmark runner (`bench/run.sh`) in its smoke mode, so it does not rot: five
//! databases, a few seconds per daemon, both daemons; and its latency run the same way.
//! They assert that a table with both daemons came out, never a figure: the benchmark is
//! not a test.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Generous: the quick mode takes about 40 s (each daemon waits up to 10 s for ticking
/// to resume after the restart, and pgqd 3.5 always needs 60 s).
const BENCH_DEADLINE: Duration = Duration::from_secs(300);

/// Runs `bench/run.sh --quick` with `args` and our debug pgqd; returns its stdout and the
/// daemon of every run in the `--json` file, after asserting that it succeeded.
fn run_quick(args: &[&str]) -> (String, serde_json::Value) {
    let out_dir = tempfile::tempdir().unwrap();
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let json_path = out_dir.path().join("runs.json");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("bash")
        .arg(format!("{root}/bench/run.sh"))
        .args(["--quick", "--ours", env!("CARGO_BIN_EXE_pgqd"), "--json"])
        .arg(&json_path)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("run bench/run.sh");

    let Some(status) = crate::harness::wait_child(&mut child, BENCH_DEADLINE) else {
        {
            // SIGTERM: the runner stops its daemons and its cluster on the way out.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            panic!(
                "bench/run.sh --quick {args:?} still running after {BENCH_DEADLINE:?}; stderr:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
    };

    let stdout = fs::read_to_string(&stdout_path).unwrap();
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert!(
        status.success(),
        "bench/run.sh --quick {args:?} failed ({status}):\n{stdout}\n{stderr}"
    );
    let runs = fs::read_to_string(&json_path).unwrap();
    (stdout, serde_json::from_str(&runs).unwrap())
}

/// The cells of the table row that starts with `start` (the first cell is empty).
fn row<'a>(stdout: &'a str, start: &str) -> Vec<&'a str> {
    let row = stdout
        .lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no row {start:?}:\n{stdout}"));
    row.split('|').map(str::trim).collect()
}

/// The daemon of every daemon run (the server's own limit is a record of its own,
/// with "limit" instead of "daemon").
fn daemons(runs: &serde_json::Value) -> Vec<&str> {
    runs.as_array()
        .unwrap()
        .iter()
        .filter_map(|run| run["daemon"].as_str())
        .collect()
}

#[test]
fn bench_quick_mode_prints_both_daemons() {
    let (stdout, runs) = run_quick(&[]);
    assert!(
        stdout.contains("| figure | pgqd 3.5 | ours | ours/pgqd |"),
        "no comparison table:\n{stdout}"
    );
    for figure in [
        "daemon CPU, s/min",
        "daemon peak RSS, MB",
        "new server sessions/min",
        "server CPU, s/min",
        "connections held, mean",
        "client backends' PSS, MB",
        "client backends' private memory, MB",
        "ticker calls/db/s, mean",
        "start until all dbs ticked, s",
        "restart until all dbs tick, s",
    ] {
        let cells = row(&stdout, &format!("| {figure} |"));
        // "", figure, pgqd 3.5, ours, ratio, ""
        assert_eq!(cells.len(), 6, "{cells:?}");
        assert!(
            cells[2] != "-" && cells[3] != "-",
            "a daemon has no value: {cells:?}"
        );
    }
    assert_eq!(daemons(&runs), ["pgqd 3.5", "ours"], "{runs}");
    // The server's own limit for the restart, and each daemon's restart against it.
    for limit in [
        "| sessions only (",
        "| sessions + one `pgq.ticker()` each (",
    ] {
        let cells = row(&stdout, limit);
        // "", limit, seconds, pgqd 3.5 ratio ("timeout": its 60 s outlast the quick
        // mode's wait), ours ratio, ""
        assert_eq!(cells.len(), 6, "{cells:?}");
        assert!(
            cells[2].parse::<f64>().is_ok() && cells[4].ends_with('x'),
            "no limit or ratio: {cells:?}\n{stdout}"
        );
    }
    let limits = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|run| run.get("limit").is_some());
    assert_eq!(limits.count(), 1, "{runs}");
}

/// The latency run's quick form: one steady window per daemon, every event delivered
/// (within the 30 s the consumer is given after the window), then the restart's row of
/// each daemon (pgqd 3.5's wait of 60 s outlasts the quick mode's 10 s).
#[test]
fn bench_latency_quick_mode_prints_both_daemons() {
    let (stdout, runs) = run_quick(&["--latency"]);
    let steady = row(&stdout, "| 1 | ticker_max_lag = 0 |");
    // "", period, queue, pgqd 3.5 p50 p95 max (3..6), ours p50 p95 max (6..9), delivered, ""
    assert_eq!(steady.len(), 11, "{steady:?}");
    assert!(
        steady[3..9].iter().all(|cell| cell.parse::<f64>().is_ok()),
        "a daemon has no latency: {steady:?}\n{stdout}"
    );
    for who in ["pgqd 3.5", "ours"] {
        row(&stdout, &format!("| ticker_max_lag = 0 | {who} |"));
    }
    assert_eq!(
        daemons(&runs),
        ["pgqd 3.5", "pgqd 3.5", "ours", "ours"],
        "{runs}"
    );
}
