#!/usr/bin/env python3
"""Side-by-side benchmark of the reference pgqd 3.5 and this pgqd.

Python 3 standard library only; talks to PostgreSQL through psql. Run it through
bench/run.sh (see --help). What it does:

1. initdb a throwaway cluster in a temp dir (own port, unix socket in that dir, no TCP,
   fsync off, track_functions = all, max_connections sized for pgqd 3.5's three
   connections per database), create `bench_tpl` with pgq and one queue, clone the
   pgq databases from it, and add a few databases without pgq;
2. for every (number of databases, ticker_period) scenario and every round, run the
   reference daemon and ours in turn (A B A B ...) with the same pgqd.ini;
3. measure each run (see METRICS and docs/benchmarks.md for how);
4. print one table per scenario (median and min-max per daemon, ratio ours/pgqd) and
   write it, with the machine, command and date, to docs/benchmarks.md.

Every cluster and daemon started here is stopped on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = "pgqd-bench"  # application_name of every session this script opens
CTL_DB = "bench_ctl"  # where this script's own queries run; a template, so no daemon sees it
TPL_DB = "bench_tpl"  # pgq + one queue; cloned into the pgq databases
PLAIN_DBS = ["plain_1", "plain_2", "plain_3"]  # databases without pgq
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# A ticker call as pg_stat_activity shows it (the last query of the ticker connection).
TICKING_SQL = (
    "select datname, extract(epoch from min(query_start)) from pg_stat_activity "
    "where backend_type = 'client backend' and pid <> pg_backend_pid() "
    f"and application_name is distinct from '{APP}' "
    r"and query ~* 'pgq\s*\.\s*ticker\s*\(\s*\)' group by datname"
)
CLIENTS_SQL = (
    "select coalesce(application_name, ''), count(*) from pg_stat_activity "
    "where backend_type = 'client backend' and pid <> pg_backend_pid() "
    f"and application_name is distinct from '{APP}' group by 1"
)
# New sessions: pg_stat_database.sessions counts a client session when it starts (the
# count is flushed at the session's first idle moment). This script's own sessions are
# in bench_ctl (excluded) or outside the measured window.
SESSIONS_SQL = (
    "select coalesce(sum(sessions), 0) from pg_stat_database "
    f"where datname is not null and datname <> '{CTL_DB}'"
)
# The ticker rate pairs a call's number with its start time, per pgq database: the
# start time of the latest pgq.ticker() call is the ticker connection's query_start in
# pg_stat_activity, and pg_stat_statements counts a call the moment it ends. The
# activity is read before and after the counts (each statement its own snapshot);
# where both reads show the same call in the same state, the count belongs to it:
# idle, it is call number `calls`; still running, number `calls` + 1. Otherwise a call
# started or ended in between, and that database is read again.
TICKER_RE = r"pgq\s*\.\s*ticker\s*\(\s*\)"
TICKER_ACTIVITY_SQL = (
    "select datname, extract(epoch from query_start), state from pg_stat_activity "
    "where backend_type = 'client backend' and pid <> pg_backend_pid() "
    f"and application_name is distinct from '{APP}' and query ~* '{TICKER_RE}';"
)
TICKER_COUNTS_SQL = (
    "select d.datname, sum(p.calls) from pg_stat_statements p "
    "join pg_database d on d.oid = p.dbid "
    f"where p.toplevel and p.query ~* '{TICKER_RE}' group by 1;"
)

# (key, label, decimals shown); run_daemon() fills these keys for each run.
METRICS = [
    ("cpu", "daemon CPU, s/min", 3),
    ("rss", "daemon peak RSS, MB", 1),
    ("sessions", "new server sessions/min", 1),
    ("server_cpu", "server CPU, s/min", 2),
    ("conns_mean", "connections held, mean", 0),
    ("conns_max", "connections held, max", 0),
    ("rate_mean", "ticker calls/db/s, mean", 3),
    ("rate_min", "ticker calls/db/s, min db", 3),
    ("rate_max", "ticker calls/db/s, max db", 3),
    ("first_all", "start until all dbs ticked, s", 2),
    ("restart", "restart until all dbs tick, s", 2),
]


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- /proc


def proc_stat(pid: int) -> tuple[int, float]:
    """(ppid, CPU seconds of the process and its reaped children)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    rest = text[text.rindex(")") + 2 :].split()
    # rest[i] is field i + 3 of proc(5): 4 ppid, 14 utime, 15 stime, 16 cutime, 17 cstime
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return int(rest[1]), ticks / CLK_TCK


def own_cpu(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the whole server: the postmaster with its reaped children
    (cutime + cstime: every backend that has exited) plus its live children."""
    total = proc_stat(postmaster)[1]
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid, cpu = proc_stat(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
        if ppid == postmaster:
            total += cpu
    return total


# --------------------------------------------------------------------------- cluster


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def pg_bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        d = Path(out.stdout.strip())
        if (d / "initdb").exists():
            return d
    except OSError:
        pass
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[4]) if p.parts[4].isdigit() else 0,
    )
    if not found:
        raise BenchError("no PostgreSQL server: install postgresql and postgresql-NN-pgq3")
    return found[-1].parent


class Cluster:
    def __init__(self, max_connections: int, keep: bool):
        self.bindir = pg_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="pgqd-bench-"))
        self.keep = keep
        self.port = random.randint(40000, 59999)
        self.data = self.dir / "data"
        self.max_connections = max_connections
        self.running = False
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.env = dict(
            os.environ,
            PGHOST=str(self.dir),
            PGPORT=str(self.port),
            PGUSER="postgres",
            PGAPPNAME=APP,
        )
        for k in ("PGDATABASE", "PGSERVICE", "PGPASSWORD", "PGOPTIONS"):
            self.env.pop(k, None)
        self.settings = [
            f"port = {self.port}",
            f"unix_socket_directories = '{self.dir}'",
            "listen_addresses = ''",
            f"max_connections = {max_connections}",
            "shared_buffers = 128MB",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "wal_level = minimal",
            "max_wal_senders = 0",
            "max_wal_size = 4GB",
            "track_functions = all",
            # Exact, immediate per-database call counts (see TICKER_ACTIVITY_SQL).
            "shared_preload_libraries = 'pg_stat_statements'",
            f"pg_stat_statements.max = {max(5000, 15 * max_connections)}",
            "pg_stat_statements.track_utility = off",
            # autovacuum stays on (so pgq leaves VACUUM to it, as in most installations),
            # but its launcher would start a worker every naptime/ndbs seconds (60 ms at
            # 1000 databases), which is server CPU neither daemon causes.
            "autovacuum_naptime = '1d'",
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] '",
        ]

    def server(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = as_postgres([str(self.bindir / args[0]), *args[1:]])
        out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
        return out

    def init(self) -> None:
        self.server("initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                    "-D", str(self.data))
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# pgqd benchmark\n" + "\n".join(self.settings) + "\n")
        self.start()

    def pg_ctl(self, *args: str) -> None:
        self.server("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"),
                    "-t", "300", "-w", *args)

    def start(self) -> None:
        self.pg_ctl("start")
        self.running = True

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        if self.running:
            self.server("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                        check=False)
            self.running = False

    def cleanup(self) -> None:
        self.stop()
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def psql(self, db: str, sql: str, timeout: float = 600, check: bool = True) -> list[list[str]]:
        """Runs a psql script in `db`; returns the result rows (fields split)."""
        cmd = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-F", "\x1f",
               "-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-"]
        try:
            out = subprocess.run(cmd, input=sql, capture_output=True, text=True,
                                 env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            if check:
                raise BenchError(f"psql timed out after {timeout} s: {sql[:200]}") from e
            return []
        if out.returncode != 0:
            if check:
                raise BenchError(f"psql -d {db} failed: {out.stderr.strip()}\n{sql[:300]}")
            return []
        return [line.split("\x1f") for line in out.stdout.splitlines() if line]

    def value(self, db: str, sql: str) -> str:
        return self.psql(db, sql)[0][0]


# --------------------------------------------------------------------------- daemons


class Daemon:
    """One daemon process, started directly (its pid is the daemon's pid)."""

    live: list["Daemon"] = []

    def __init__(self, binary: str, ini: Path, logfile: Path):
        self.logfile = logfile
        with open(logfile, "w") as out:
            self.proc = subprocess.Popen([binary, str(ini)], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ini.parent)
        Daemon.live.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGINT (pgqd's graceful shutdown), SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"daemon {self.pid} ignored SIGINT for 15 s, killing it")
                self.proc.kill()
                self.proc.wait()
        if self in Daemon.live:
            Daemon.live.remove(self)


def write_ini(path: Path, cluster: Cluster, period: float) -> None:
    lines = [
        "[pgqd]",
        f"base_connstr = host={cluster.dir} port={cluster.port} user=postgres",
        "syslog = 0",
    ]
    if period != 1:
        lines.append(f"ticker_period = {period:g}")
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- measuring


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cluster: Cluster | None = None
        self.pgq_dbs: list[str] = []
        self.run_no = 0

    # ---- setup

    def setup_cluster(self) -> None:
        max_n = max(n for n, _ in self.args.scenarios)
        # pgqd 3.5 may hold ticker, retry and maint connections for every database at
        # once; plus discovery, non-pgq probes, this script and some slack.
        max_conn = max(100, 3 * max_n + 100)
        self.cluster = c = Cluster(max_conn, self.args.keep)
        log(f"initdb in {c.dir} (port {c.port}, max_connections {max_conn})")
        c.init()
        c.psql("postgres", f"create database {CTL_DB};\ncreate database {TPL_DB};\n")
        c.psql(CTL_DB, "create extension pg_stat_statements;\n")
        c.psql(TPL_DB, "create extension pgq;\nselect pgq.create_queue('bench_queue');\n")
        c.psql("postgres",
               f"alter database {CTL_DB} is_template true;\n"
               f"alter database {TPL_DB} is_template true;\n"
               + "".join(f"create database {d};\n" for d in PLAIN_DBS))

    def ensure_dbs(self, n: int) -> None:
        """Grows the set of pgq databases to n (clones of bench_tpl)."""
        c = self.cluster
        assert c is not None
        if n <= len(self.pgq_dbs):
            return
        names = [f"bench_{i:04d}" for i in range(len(self.pgq_dbs) + 1, n + 1)]
        log(f"creating {len(names)} pgq databases from {TPL_DB}")
        t = time.monotonic()
        c.psql("postgres", "".join(f"create database {d} template {TPL_DB};\n" for d in names),
               timeout=3600)
        self.pgq_dbs.extend(names)
        # Write the new files out now rather than during a measured window.
        c.psql(CTL_DB, "checkpoint;")
        os.sync()
        log(f"created in {time.monotonic() - t:.1f} s")

    # ---- polls

    def ticking(self) -> dict[str, float]:
        """Databases whose ticker connection has called pgq.ticker(): name -> query_start."""
        rows = self.cluster.psql(CTL_DB, TICKING_SQL, timeout=30, check=False)
        return {r[0]: float(r[1]) for r in rows if r[1]}

    def clients(self) -> dict[str, int]:
        rows = self.cluster.psql(CTL_DB, CLIENTS_SQL, timeout=30, check=False)
        return {r[0]: int(r[1]) for r in rows}

    def wait_first_ticks(self, daemon: Daemon, since: float, timeout: float) -> float:
        """Seconds from `since` until every pgq database has had a ticker call
        (query_start of the first ticker call seen per database); inf on timeout."""
        want = set(self.pgq_dbs)
        first: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            daemon.check_alive()
            for db, ts in self.ticking().items():
                if db in want and db not in first:
                    first[db] = ts
            if len(first) == len(want):
                return max(first.values()) - since
            time.sleep(0.2)
        log(f"  only {len(first)}/{len(want)} databases ticking after {timeout:g} s")
        return math.inf

    def wait_no_clients(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.clients():
                return
            time.sleep(0.2)
        raise BenchError(f"client sessions still open {timeout} s after the daemon stopped: "
                         f"{self.clients()}")

    def ticker_calls(self, n: int) -> dict[str, tuple[int, float]]:
        """Per pgq database: (number of a ticker call, its start time); see
        TICKER_ACTIVITY_SQL. Reads again the databases that were ambiguous (up to 3 s)."""
        want = set(self.pgq_dbs[:n])
        found: dict[str, tuple[int, float]] = {}
        script = f"{TICKER_ACTIVITY_SQL}\n\\echo --\n{TICKER_COUNTS_SQL}\n\\echo --\n{TICKER_ACTIVITY_SQL}\n"
        for _ in range(15):
            rows = self.cluster.psql(CTL_DB, script, timeout=60)
            cut1 = rows.index(["--"])
            cut2 = rows.index(["--"], cut1 + 1)
            before = {r[0]: (r[1], r[2]) for r in rows[:cut1]}
            counts = {r[0]: int(r[1]) for r in rows[cut1 + 1 : cut2]}
            after = {r[0]: (r[1], r[2]) for r in rows[cut2 + 1 :]}
            for db in want - found.keys():
                if db in before and db in counts and before[db] == after.get(db):
                    start, state = before[db]
                    found[db] = (counts[db] + (state == "active"), float(start))
            if len(found) == len(want):
                break
            time.sleep(0.2)
        return found

    # ---- one run

    def run_daemon(self, who: str, binary: str, n: int, period: float, window: float,
                   restart: bool) -> dict:
        a = self.args
        c = self.cluster
        self.run_no += 1
        tag = f"{self.run_no:02d}-{who}-{n}-{period:g}"
        ini = c.dir / f"{tag}.ini"
        write_ini(ini, c, period)
        self.wait_no_clients()
        res: dict = {"daemon": who, "dbs": n, "ticker_period": period, "window": window}

        t_start = time.time()
        d = Daemon(binary, ini, c.dir / f"{tag}.log")
        try:
            res["first_all"] = self.wait_first_ticks(d, t_start, a.start_timeout)
            time.sleep(per_dbs(a.warmup, n))
            d.check_alive()

            ts = time.monotonic()
            before = self.ticker_calls(n)
            res["snapshot_s"] = time.monotonic() - ts
            pm = c.postmaster_pid()
            sess0 = int(c.value(CTL_DB, SESSIONS_SQL))
            cpu0, srv0, t0 = own_cpu(d.pid), server_cpu(pm), time.monotonic()
            samples: list[int] = []
            apps: dict[str, int] = {}
            while True:
                d.check_alive()
                cl = self.clients()
                samples.append(sum(cl.values()))
                for k, v in cl.items():
                    apps[k] = max(apps.get(k, 0), v)
                left = t0 + window - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(a.sample_every, left))
            cpu1, srv1, t1 = own_cpu(d.pid), server_cpu(pm), time.monotonic()
            sess1 = int(c.value(CTL_DB, SESSIONS_SQL))
            after = self.ticker_calls(n)
            per_min = 60 / (t1 - t0)

            rates = []
            for db in self.pgq_dbs[:n]:
                if db in before and db in after and after[db][1] > before[db][1]:
                    (n0, q0), (n1, q1) = before[db], after[db]
                    rates.append((n1 - n0) / (q1 - q0))
            res["rate_dbs"] = len(rates)
            if len(rates) < n:
                log(f"  ticker rate measured in {len(rates)} of {n} databases only")
            if not rates:
                rates = [math.nan]
            res.update(
                cpu=(cpu1 - cpu0) * per_min,
                server_cpu=(srv1 - srv0) * per_min,
                sessions=(sess1 - sess0) * per_min,
                conns_mean=statistics.mean(samples),
                conns_max=max(samples),
                conns_by_app=apps,
                rate_mean=statistics.mean(rates),
                rate_min=min(rates),
                rate_max=max(rates),
                measured_s=t1 - t0,
            )

            if restart:
                c.restart()
                t_up = time.time()
                res["restart"] = max(0.0, self.wait_first_ticks(d, t_up, a.restart_timeout))
            res["rss"] = vm_hwm_mb(d.pid)
        finally:
            d.stop()
        res["log_tail"] = d.log_tail(5)
        return res

    # ---- the whole benchmark

    def run(self) -> list[dict]:
        a = self.args
        runs: list[dict] = []
        self.setup_cluster()
        daemons = [("pgqd 3.5", a.reference), ("ours", a.ours)]
        for n, period in a.scenarios:
            window = per_dbs(a.window, n)
            self.ensure_dbs(n)
            restart = a.restart == "all" or (a.restart == "default" and period == 1)
            for rnd in range(1, a.rounds + 1):
                for who, binary in daemons:
                    log(f"{n} dbs, ticker_period {period:g}, round {rnd}/{a.rounds}: {who}")
                    r = self.run_daemon(who, binary, n, period, window, restart)
                    r["round"] = rnd
                    runs.append(r)
                    log("  " + ", ".join(f"{k} {r[k]:.3g}" for k, *_ in METRICS if k in r))
        return runs


# --------------------------------------------------------------------------- reporting


def fmt(v: float, digits: int, cap: float | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return f">{cap:g}" if cap else "timeout"
    return f"{v:.{digits}f}"


def cell(values: list[float], digits: int, cap: float | None) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med, digits, cap)
    return f"{fmt(med, digits, cap)} [{fmt(min(values), digits, cap)}–{fmt(max(values), digits, cap)}]"


def tables(runs: list[dict], args: argparse.Namespace) -> str:
    out = []
    scenarios = []
    for r in runs:
        key = (r["dbs"], r["ticker_period"])
        if key not in scenarios:
            scenarios.append(key)
    for n, period in scenarios:
        sel = [r for r in runs if (r["dbs"], r["ticker_period"]) == (n, period)]
        rounds = max(r["round"] for r in sel)
        window = sel[0]["window"]
        out.append(f"### {n} pgq databases (+{len(PLAIN_DBS) + 1} without pgq), "
                   f"ticker_period = {period:g}\n")
        out.append(f"{window:g} s measured window after warm-up, {rounds} round(s) A B; "
                   "median [min–max] over the rounds.\n")
        out.append("| figure | pgqd 3.5 | ours | ours/pgqd |")
        out.append("|---|---|---|---|")
        for key, label, digits in METRICS:
            cap = {"restart": args.restart_timeout, "first_all": args.start_timeout}.get(key)
            ref = [r[key] for r in sel if r["daemon"] == "pgqd 3.5" and key in r]
            our = [r[key] for r in sel if r["daemon"] == "ours" and key in r]
            if not ref and not our:
                continue
            ratio = "-"
            if ref and our:
                mr, mo = statistics.median(ref), statistics.median(our)
                if math.isfinite(mr) and math.isfinite(mo) and mr != 0:
                    ratio = f"{mo / mr:.2f}"
            out.append(f"| {label} | {cell(ref, digits, cap)} | {cell(our, digits, cap)} | {ratio} |")
        out.append("")
    return "\n".join(out)


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def machine(cluster: Cluster, args: argparse.Namespace) -> list[str]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    osname = platform.platform()
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return [
        f"- CPU: {os.cpu_count()} x {cpu}",
        f"- memory: {mem}",
        f"- OS: {osname}, kernel {platform.release()}",
        "- load average (1, 5, 15 min) when the benchmark started: "
        + ", ".join(f"{x:.2f}" for x in args.loadavg_start),
        f"- PostgreSQL: {cluster.value(CTL_DB, 'select version()')}",
        f"- pgq: {cluster.value(TPL_DB, 'select pgq.version()')}",
        f"- reference: `{args.reference}` ({sh([args.reference, '-V'])})",
        f"- ours: `{os.path.relpath(args.ours, REPO) if args.ours.startswith(str(REPO)) else args.ours}` "
        f"({sh([args.ours, '-V'])}; {args.ours_source})",
    ]


METHOD = """\
How each figure is measured (the script is `bench/bench.py`):

- One throwaway cluster for the whole benchmark (settings below); the pgq databases are
  clones of `bench_tpl` (pgq + one queue). Every daemon runs in the foreground with the
  same pgqd.ini: `base_connstr`, `syslog = 0` and, in the second round, `ticker_period`;
  everything else at its default (auto-detection through template1, check 60 s,
  retry 30 s, maint 120 s). The daemons alternate pgqd 3.5, ours, pgqd 3.5, ours, ...
- *start until all dbs ticked*: from the daemon's start until every pgq database has a
  connection whose query in `pg_stat_activity` is `pgq.ticker()`, taking that query's
  `query_start` (polled every 0.2 s, so a later call may be seen: +-0.2 s).
- Then a warm-up, then the measured window. Over the window:
  - *daemon CPU*: utime + stime of the daemon's process (`/proc/PID/stat`), as seconds per minute;
  - *server CPU*: the postmaster's utime + stime + cutime + cstime (its reaped children:
    every backend that has exited) plus utime + stime of its live children, delta over the
    window, seconds per minute. It includes the checkpointer, `pg_stat_statements`'
    bookkeeping and this script's `pg_stat_activity` samples (one short session every
    few seconds), the same for both daemons;
  - *new server sessions*: delta of `sum(pg_stat_database.sessions)` over all databases
    but the script's own `bench_ctl`, per minute;
  - *connections held*: client backends in `pg_stat_activity` (not the script's), sampled
    every few seconds: mean and max of the samples;
  - *ticker calls/db/s*: per pgq database, at the start and at the end of the window,
    the start time of the latest `pgq.ticker()` call (`query_start` of the ticker
    connection in `pg_stat_activity`) paired with that call's number (`calls` in
    `pg_stat_statements`, which counts a call the moment it ends; a call still running
    is the next number). The rate is the number of calls between the two paired calls
    divided by the time between their starts: exact, with no quantisation to the
    window. Mean over the databases, and the slowest and fastest database.
    `pg_stat_user_functions` is not used for this: a backend publishes its function
    counts at most once a second, so a read lags by 0 or 1 call, and with a daemon
    ticking exactly every 1.000 s all databases lag in step, which biased the mean by up
    to 1/window (0.989 measured for a daemon that made 67 calls in 67 s).
- *daemon peak RSS*: `VmHWM` of `/proc/PID/status` at the end of the run (whole run).
- *restart until all dbs tick* (only in the runs with the first ticker_period): after the
  window, `pg_ctl restart -m fast` with the daemon running; from the moment `pg_ctl`
  returns (server accepting connections) until every pgq database again has a connection
  whose query is `pgq.ticker()` (all backends are new after a restart).
- Then SIGINT; the next daemon starts only after every client backend has gone.
"""


def write_markdown(path: Path, runs: list[dict], args: argparse.Namespace, cluster: Cluster,
                   started: datetime.datetime, elapsed: float) -> None:
    notes = ""
    if path.exists():
        text = path.read_text()
        i = text.find("\n## Notes")
        if i >= 0:
            notes = text[i + 1 :]
    counts = sorted({n for n, _ in args.scenarios})
    windows = ", ".join(f"{n} dbs: {per_dbs(args.window, n):g} s" for n in counts)
    warmups = ", ".join(f"{n} dbs: {per_dbs(args.warmup, n):g} s" for n in counts)
    parts = [
        "# Benchmark: pgqd 3.5 and this pgqd, side by side",
        "",
        "Generated by `bench/run.sh`; the numbers below are what that run measured.",
        "Regenerate with the command below (it rewrites everything above `## Notes`).",
        "",
        "```sh",
        os.environ.get("BENCH_COMMAND", "bench/run.sh " + " ".join(sys.argv[1:])),
        "```",
        "",
        f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; the run took {elapsed / 60:.1f} min.",
        "",
        "## Machine",
        "",
        *machine(cluster, args),
        "",
        "## Method",
        "",
        f"Measured windows: {windows}; warm-ups after every database has ticked: {warmups} "
        "(at 1000 databases the last start-up connections, ours' second connection per "
        "database, are opened up to about 20 s after the start on a 2-core machine, and the "
        f"window is meant to be steady state); {args.rounds} round(s) per scenario; "
        f"connections sampled every {args.sample_every:g} s.",
        "",
        METHOD,
        "Cluster settings (appended to postgresql.conf after initdb):",
        "",
        "```",
        *[s for s in cluster.settings if not s.startswith(("port", "unix_socket"))],
        "```",
        "",
        "## Results",
        "",
        tables(runs, args),
    ]
    text = "\n".join(parts).rstrip() + "\n"
    if notes:
        text += "\n" + notes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------- main


def scenario_list(text: str) -> list[tuple[int, float]]:
    """"100x1,100x0.1,1000x1" -> [(100, 1.0), (100, 0.1), (1000, 1.0)]"""
    out = []
    for item in text.split(","):
        n, _, period = item.strip().partition("x")
        if not n.isdigit() or not period:
            raise argparse.ArgumentTypeError(f"{item!r} is not DBSxPERIOD (e.g. 100x0.1)")
        out.append((int(n), float(period)))
    if [n for n, _ in out] != sorted(n for n, _ in out):
        raise argparse.ArgumentTypeError("list the scenarios by ascending number of databases")
    return out


def per_dbs_list(text: str) -> dict[int, float]:
    """"100=60,1000=30" -> {100: 60.0, 1000: 30.0}; a bare "45" -> {0: 45.0}"""
    out = {}
    for item in text.split(","):
        n, eq, secs = item.strip().rpartition("=")
        out[int(n) if eq else 0] = float(secs)
    return out


def per_dbs(values: dict[int, float], n: int) -> float:
    """The value of the largest listed database count <= n (else the smallest listed)."""
    keys = sorted(values)
    fitting = [k for k in keys if k <= n]
    return values[fitting[-1] if fitting else keys[0]]


DEFAULT_SCENARIOS = "100x1,100x0.1,1000x1"


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
    p.add_argument("--restart-timeout", type=float, default=120,
                   help="seconds to wait for ticking after the restart (default 120)")
    p.add_argument("--start-timeout", type=float, default=120,
                   help="seconds to wait for every database to tick after start (default 120)")
    p.add_argument("--sample-every", type=float, default=5,
                   help="seconds between pg_stat_activity samples (default 5)")
    p.add_argument("--reference", default=default_reference(),
                   help="pgqd 3.5 (default $PGQD_REFERENCE, which bench/run.sh sets to "
                        "Debian's pgqd unpacked in a cache, else /usr/bin/pgqd)")
    p.add_argument("--ours", help="our pgqd; default: cargo build --release --locked, "
                                  "then target/release/pgqd")
    p.add_argument("--rev", help="build our pgqd from this git revision (a clean export "
                                 "under target/bench-src) instead of the working tree")
    p.add_argument("--out", help="markdown report to write (default docs/benchmarks.md; "
                                 "none with --quick); '-' for none")
    p.add_argument("--json", help="also write every run's raw figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the cluster directory")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 5 databases, ticker_period 1, 1 round, 4 s window, "
                        "restart timeout 10 s, no report file")
    a = p.parse_args(argv)
    if a.quick:
        a.scenarios, a.rounds, a.window = [(5, 1.0)], 1, {0: 4.0}
        a.warmup, a.restart_timeout, a.start_timeout, a.sample_every = {0: 1.0}, 10, 30, 1
    if a.out is None:
        a.out = "-" if a.quick else str(REPO / "docs" / "benchmarks.md")
    return a


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


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
        log(f"{' '.join(cargo)} (commit {commit})")
        subprocess.run(cargo, cwd=src, check=True, env=dict(os.environ, CARGO_TARGET_DIR=str(out)))
        args.ours = str(out / "release" / "pgqd")
        args.ours_source = f"built from commit {commit} with `{' '.join(cargo)}`"
    else:
        log(" ".join(cargo))
        subprocess.run(cargo, cwd=REPO, check=True)
        args.ours = str(REPO / "target" / "release" / "pgqd")
        dirty = git("status", "--porcelain", "--untracked-files=no", "src", "Cargo.toml",
                    "Cargo.lock")
        args.ours_source = (f"built from the working tree at commit {git('rev-parse', '--short', 'HEAD')}"
                            f"{' with local changes' if dirty else ''}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not os.path.exists(args.reference):
        raise BenchError(f"reference pgqd not found at {args.reference} (bench/run.sh fetches it)")
    build_ours(args)
    args.ours = os.path.abspath(args.ours)
    args.reference = os.path.abspath(args.reference)

    bench = Bench(args)

    def cleanup() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # finish cleaning up whatever arrives
        for d in list(Daemon.live):
            d.stop()
        if bench.cluster:
            bench.cluster.cleanup()
            bench.cluster = None

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))

    started = datetime.datetime.now(datetime.timezone.utc)
    args.loadavg_start = os.getloadavg()
    t = time.monotonic()
    runs = bench.run()
    elapsed = time.monotonic() - t
    print()
    print(tables(runs, args))
    if args.json:
        finite = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in r.items()} for r in runs]  # JSON has no Infinity: timeouts are null
        Path(args.json).write_text(json.dumps(finite, indent=1, default=str) + "\n")
    if args.out != "-":
        write_markdown(Path(args.out), runs, args, bench.cluster, started, elapsed)
        log(f"wrote {args.out}")
    log(f"done in {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
