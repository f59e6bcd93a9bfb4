"""The throwaway PostgreSQL cluster: initdb, settings, start/restart/stop, psql, and the
pgq databases the daemons tick."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = "pgqd-bench"  # application_name of every session this script opens
CTL_DB = "bench_ctl"  # where this script's own queries run; a template, so no daemon sees it
TPL_DB = "bench_tpl"  # pgq + one queue; cloned into the pgq databases
QUEUE = "bench_queue"
PLAIN_DBS = ["plain_1", "plain_2", "plain_3"]  # databases without pgq


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


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
        self.pgq_dbs: list[str] = []
        # The script's own socket: the server listens in both directories, and accepts
        # from each listen queue in turn, so the script's sessions do not wait behind a
        # daemon that opens thousands at once (pgqd 3.5 at 3000 databases fills the
        # daemons' queue, somaxconn deep, for over a minute: a psql there waited > 60 s
        # or was refused with EAGAIN, and a late read skews the figures read after it).
        self.ctl_dir = self.dir / "ctl"
        self.ctl_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.ctl_dir, "postgres", "postgres")
        self.env = dict(
            os.environ,
            PGHOST=str(self.ctl_dir),
            PGPORT=str(self.port),
            PGUSER="postgres",
            PGAPPNAME=APP,
        )
        for k in ("PGDATABASE", "PGSERVICE", "PGPASSWORD", "PGOPTIONS"):
            self.env.pop(k, None)
        self.settings = [
            f"port = {self.port}",
            f"unix_socket_directories = '{self.dir}, {self.ctl_dir}'",
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
            # Exact, immediate per-database call counts (see activity.TICKER_ACTIVITY_SQL).
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

    # ---- the server

    def server(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = as_postgres([str(self.bindir / args[0]), *args[1:]])
        out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
        return out

    def init(self) -> None:
        """initdb, the settings, start, and the script's own databases (bench_ctl,
        bench_tpl, the databases without pgq)."""
        self.server("initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                    "-D", str(self.data))
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# pgqd benchmark\n" + "\n".join(self.settings) + "\n")
        self.start()
        self.psql("postgres", f"create database {CTL_DB};\ncreate database {TPL_DB};\n")
        self.psql(CTL_DB, "create extension pg_stat_statements;\n")
        self.psql(TPL_DB, f"create extension pgq;\nselect pgq.create_queue('{QUEUE}');\n")
        self.psql("postgres",
                  f"alter database {CTL_DB} is_template true;\n"
                  f"alter database {TPL_DB} is_template true;\n"
                  + "".join(f"create database {d};\n" for d in PLAIN_DBS))

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

    # ---- SQL

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

    # ---- the pgq databases

    def ensure_pgq_dbs(self, n: int) -> None:
        """Grows the set of pgq databases to n (bench_0001 ..., clones of bench_tpl)."""
        if n <= len(self.pgq_dbs):
            return
        names = [f"bench_{i:04d}" for i in range(len(self.pgq_dbs) + 1, n + 1)]
        log(f"creating {len(names)} pgq databases from {TPL_DB}")
        t = time.monotonic()
        self.create_pgq_dbs(names)
        self.pgq_dbs.extend(names)
        log(f"created in {time.monotonic() - t:.1f} s")

    def create_pgq_dbs(self, names: list[str]) -> None:
        self.psql("postgres", "".join(f"create database {d} template {TPL_DB};\n" for d in names),
                  timeout=3600)
        # Write the new files out now rather than during a measured window.
        self.psql(CTL_DB, "checkpoint;")
        os.sync()
