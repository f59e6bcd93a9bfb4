//! The benchmark runner (`bench/run.sh`) in its smoke mode, so it does not rot: five
//! databases, a few seconds per daemon, both daemons. It asserts that a table with both
//! daemons came out, never a figure: the benchmark is not a test.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Generous: the quick mode takes about 40 s (each daemon waits up to 10 s for ticking
/// to resume after the restart, and pgqd 3.5 always needs 60 s).
const BENCH_DEADLINE: Duration = Duration::from_secs(300);

#[test]
fn bench_quick_mode_prints_both_daemons() {
    let out_dir = tempfile::tempdir().unwrap();
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let json_path = out_dir.path().join("runs.json");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("bash")
        .arg(format!("{root}/bench/run.sh"))
        .args(["--quick", "--ours", env!("CARGO_BIN_EXE_pgqd"), "--json"])
        .arg(&json_path)
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
                "bench/run.sh --quick still running after {BENCH_DEADLINE:?}; stderr:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
    };

    let stdout = fs::read_to_string(&stdout_path).unwrap();
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert!(
        status.success(),
        "bench/run.sh --quick failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("| figure | pgqd 3.5 | ours | ours/pgqd |"),
        "no comparison table:\n{stdout}\n{stderr}"
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
        let row = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {figure} |")))
            .unwrap_or_else(|| panic!("no row {figure:?}:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // "", figure, pgqd 3.5, ours, ratio, ""
        assert_eq!(cells.len(), 6, "{row}");
        assert!(
            cells[2] != "-" && cells[3] != "-",
            "a daemon has no value: {row}"
        );
    }

    let runs = fs::read_to_string(&json_path).unwrap();
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let daemons: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["daemon"].as_str().unwrap())
        .collect();
    assert_eq!(daemons, ["pgqd 3.5", "ours"], "{runs}");
}
