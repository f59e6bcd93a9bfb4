"""bench/run.sh's options, building our pgqd, and the whole benchmark or soak from start to
cleanup."""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .cluster import BenchError, log
from .daemons import Daemon
from .report import REPO, git, tables, write_markdown, working_tree
from .scenarios import (DEFAULT_SCENARIOS, Bench, Scenario, ini_settings, per_dbs_list,
                        scenario_list)
from .churn import Churn
from . import latency_report
from .latency import Latency
from .reading_cost import ReadingCost
from .soak import Soak


def default_reference() -> str:
    return os.environ.get("PGQD_REFERENCE") or "/usr/bin/pgqd"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="Runs pgqd 3.5 and this pgqd in turn (A B A B ...) on one throwaway "
                    "PostgreSQL cluster and compares them.")
    p.add_argument("--scenarios", type=scenario_list, default=scenario_list(DEFAULT_SCENARIOS),
                   help="DBSxTICKER_PERIOD, comma-separated, ascending DBS "
                        f"(default {DEFAULT_SCENARIOS})")
    p.add_argument("--rounds", type=int, default=3, help="A B pairs per scenario (default 3)")
    p.add_argument("--window", type=per_dbs_list, default=per_dbs_list("100=60,1000=30"),
                   help="measured window in seconds: one number, or DBS=SECS per database "
                        "count (default 100=60,1000=30)")
    p.add_argument("--warmup", type=per_dbs_list, default=per_dbs_list("100=10,1000=30"),
                   help="seconds after every database has ticked before the window, as "
                        "--window (default 100=10,1000=30)")
    p.add_argument("--restart", choices=["default", "all", "none"], default="default",
                   help="restart test in the ticker_period 1 scenarios (default), all, none")
    p.add_argument("--restart-timeout", type=per_dbs_list, default=per_dbs_list("120,3000=300"),
                   help="seconds to wait for ticking after the restart, as --window "
                        "(default 120,3000=300)")
    p.add_argument("--start-timeout", type=per_dbs_list, default=per_dbs_list("120,3000=300"),
                   help="seconds to wait for every database to tick after start, as "
                        "--window (default 120,3000=300)")
    p.add_argument("--sample-every", type=float, default=5,
                   help="seconds between pg_stat_activity samples (default 5)")
    p.add_argument("--reference", default=default_reference(),
                   help="pgqd 3.5 (default $PGQD_REFERENCE, which bench/run.sh sets to "
                        "Debian's pgqd unpacked in a cache, else /usr/bin/pgqd)")
    p.add_argument("--ours", help="our pgqd; default: cargo build --release --locked, "
                                  "then target/release/pgqd")
    p.add_argument("--rev", help="build our pgqd from this git revision (a clean export "
                                 "under target/bench-src) instead of the working tree")
    p.add_argument("--variant", type=ini_settings, default={},
                   help="also run our pgqd with these pgqd.ini settings (KEY=VALUE, "
                        "comma-separated) as a third daemon in every round, e.g. "
                        "leader_lock=0")
    p.add_argument("--out", help="markdown report to write (default docs/benchmarks.md; "
                                 "none with --quick); '-' for none; with --reading-cost, "
                                 "the section is appended to it (default none)")
    p.add_argument("--json", help="also write every run's raw figures to this file (with "
                                  "--reading-cost, every call)")
    p.add_argument("--keep", action="store_true", help="keep the cluster directory")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 5 databases, ticker_period 1, 1 round, 4 s window, "
                        "restart timeout 10 s, no report file")
    soak = p.add_argument_group(
        "soak", "--soak MINUTES runs only our pgqd (and pgqd 3.5 after it with "
                "--soak-reference) for that long while, once a minute, a database is "
                "created, one dropped and the server restarted; it samples the daemon's RSS "
                "and open descriptors every few seconds, reports their start, end, maximum "
                "and growth and whether ticking resumed after each restart, and stops by "
                "itself. Exit status 1 when ours died or did not resume ticking.")
    soak.add_argument("--soak", type=float, metavar="MINUTES", help="soak instead of benchmark")
    soak.add_argument("--soak-dbs", type=int, default=20,
                      help="pgq databases during the soak (default 20)")
    soak.add_argument("--soak-reference", action="store_true",
                      help="soak pgqd 3.5 too, after ours")
    soak.add_argument("--soak-out", help="also write the soak report to this markdown file")
    soak.add_argument("--churn", type=int, metavar="N",
                      help="instead of the timed soak: create and drop N pgq databases in "
                           "batches (each served before it is dropped), sampling RSS after "
                           "every batch; reports the growth per 1000 databases (--soak-dbs, "
                           "--soak-reference and --soak-out apply)")
    lat = p.add_argument_group(
        "latency", "--latency measures instead how long an event takes from its commit to a "
                   "consumer polling every 50 ms, each daemon alone in turn, at ticker_period "
                   "1 and 0.1, with pgq's default queue settings and with ticker_max_lag 0, "
                   "and across a server restart (--restart none skips it); writes "
                   "docs/benchmarks-latency.md. With --quick: ticker_period 1, ticker_max_lag "
                   "0, a 4 s window.")
    lat.add_argument("--latency", action="store_true", help="latency instead of benchmark")
    lat.add_argument("--latency-window", type=float, default=30,
                     help="seconds of counted events per measurement (default 30)")
    rc = p.add_argument_group(
        "reading cost", "--reading-cost runs no daemon: it measures what one reading of the "
                        "queue figures (the SQL of src/jobs/queue_stats.rs, read at run time) "
                        "costs the server in CPU, in place: one session per pgq database, "
                        "pgq.ticker() every second and a reading every period, each call timed "
                        "by its backend's /proc/PID/schedstat. Prints a markdown section "
                        "(--out FILE appends it to FILE). With --quick: 5 databases, period 5.")
    rc.add_argument("--reading-cost", action="store_true",
                    help="reading cost instead of benchmark")
    rc.add_argument("--reading-dbs", type=int, metavar="N",
                    help="pgq databases and sessions (default 100)")
    rc.add_argument("--reading-period", type=float, metavar="SECS",
                    help="seconds between a session's readings, at least 2 (default 60, "
                         "queue_stats_period's default)")
    rc.add_argument("--reading-duration", type=float, metavar="SECS",
                    help="seconds of calls (default 3.2 x period + 10: three readings or "
                         "more per session)")
    rc.add_argument("--reading-floor", type=int, default=3, metavar="N",
                    help="`select 1` calls per session, timed the same way (default 3)")
    rc.add_argument("--reading-consumers", type=int, default=1, metavar="N",
                    help="consumers registered on the queue in every database (default 1, "
                         "so the consumer statement returns a row; 0 for none)")
    a = p.parse_args(argv)
    if a.quick:
        a.scenarios, a.rounds, a.window = [Scenario(5)], 1, {0: 4.0}
        a.warmup, a.restart_timeout, a.start_timeout, a.sample_every = {0: 1.0}, {0: 10.0}, {0: 30.0}, 1
    if a.reading_cost:
        reading_cost_defaults(p, a)
    if a.out is None:
        page = "benchmarks-latency.md" if a.latency else "benchmarks.md"
        a.out = "-" if a.quick or a.reading_cost else str(REPO / "docs" / page)
    return a


def reading_cost_defaults(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """--reading-cost's defaults (smaller with --quick), and their bounds."""
    if a.reading_dbs is None:
        a.reading_dbs = 5 if a.quick else 100
    if a.reading_period is None:
        a.reading_period = 5.0 if a.quick else 60.0
    if a.reading_duration is None:
        a.reading_duration = 3.2 * a.reading_period + 10
    if a.reading_dbs < 1:
        p.error("--reading-dbs: at least 1")
    if a.reading_period < 2:
        p.error("--reading-period: at least 2 (a reading goes between two ticker calls)")
    if a.reading_duration < a.reading_period:
        p.error("--reading-duration: at least one period")
    if a.reading_floor < 0 or a.reading_consumers < 0:
        p.error("--reading-floor and --reading-consumers: 0 or more")


def build_ours(args: argparse.Namespace) -> None:
    """Sets args.ours (the binary) and args.ours_source (what it was built from)."""
    if args.ours:
        args.ours_source = "binary given with --ours"
        return
    cargo = ["cargo", "build", "--release", "--locked"]
    if args.rev:
        # A clean export of one commit, built apart from the working tree's target/.
        commit = git("rev-parse", "--short", args.rev + "^{commit}")
        src, out = REPO / "target" / "bench-src", REPO / "target" / "bench-build"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        # Exported under this checkout's target/, a commit from before the workspace
        # would be taken for a member of it: make it a workspace of its own.
        manifest = src / "Cargo.toml"
        if "[workspace]" not in manifest.read_text():
            manifest.write_text(manifest.read_text() + "\n[workspace]\n")
        log(f"{' '.join(cargo)} (commit {commit})")
        subprocess.run(cargo, cwd=src, check=True, env=dict(os.environ, CARGO_TARGET_DIR=str(out)))
        args.ours = str(out / "release" / "pgqd")
        args.ours_source = f"built from commit {commit} with `{' '.join(cargo)}`"
    else:
        log(" ".join(cargo))
        subprocess.run(cargo, cwd=REPO, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        args.ours = str((REPO / target) / "release" / "pgqd")
        commit, dirty = working_tree("src", "crates", "Cargo.toml", "Cargo.lock")
        args.ours_source = (f"built from the working tree at commit {commit}"
                            f"{' with local changes' if dirty else ''}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.reading_cost:
        job = ReadingCost(args)  # runs no daemon: neither pgqd is needed
    else:
        alone = (args.soak or args.churn) and not args.soak_reference
        if not alone and not os.path.exists(args.reference):
            raise BenchError(f"reference pgqd not found at {args.reference} "
                             "(bench/run.sh fetches it)")
        build_ours(args)
        args.ours = os.path.abspath(args.ours)
        args.reference = os.path.abspath(args.reference)
        job = (Churn(args) if args.churn else Soak(args) if args.soak
               else Latency(args) if args.latency else Bench(args))

    def cleanup() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # finish cleaning up whatever arrives
        Daemon.stop_all()
        if job.cluster:
            job.cluster.cleanup()
            job.cluster = None

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))

    if args.soak or args.churn or args.reading_cost:
        return job.run()
    started = datetime.datetime.now(datetime.timezone.utc)
    args.loadavg_start = os.getloadavg()
    t = time.monotonic()
    runs = job.run()
    elapsed = time.monotonic() - t
    args.loadavg_end = os.getloadavg()
    print()
    print(latency_report.tables(runs, args) if args.latency else tables(runs, args))
    if args.json:
        finite = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in r.items()} for r in runs]  # JSON has no Infinity: timeouts are null
        Path(args.json).write_text(json.dumps(finite, indent=1, default=str) + "\n")
    if args.out != "-":
        if args.latency:
            latency_report.write_page(Path(args.out), runs, job, started, elapsed)
        else:
            write_markdown(Path(args.out), runs, args, job.cluster, started, elapsed)
        log(f"wrote {args.out}")
    log(f"done in {elapsed / 60:.1f} min")
    return 0
