"""A kept psql session: one psql process fed statements on its stdin, each answered
before the next is sent, for the latency run's producer and consumer (a psql per
statement would cost a connection and some milliseconds each)."""

from __future__ import annotations

import os
import select
import subprocess
import time

from .cluster import BenchError, Cluster

# Written after every statement: psql echoes it once the statement's result is printed,
# so the lines before it are that result.
END_MARK = "--end--"


class Disconnected(BenchError):
    """The session's psql exited: the server went away (a restart) or the SQL failed."""


class Session:
    """psql in unaligned, tuples-only mode; `query` sends one statement in autocommit, so
    when its result has been read the statement has committed."""

    def __init__(self, cluster: Cluster, db: str):
        cmd = [str(cluster.bindir / "psql"), "-X", "-q", "-A", "-t", "-F", "\x1f",
               "-v", "ON_ERROR_STOP=1", "-d", db]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=cluster.env)
        self.buf = b""

    def query(self, sql: str, timeout: float = 30) -> list[list[str]]:
        """Runs one statement (its `;` may be left out); returns its rows (fields split).
        Raises Disconnected when psql exits, BenchError when no answer comes within
        `timeout` seconds."""
        statement = sql.rstrip().rstrip(";")
        try:
            self.proc.stdin.write(f"{statement};\n\\echo {END_MARK}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise Disconnected(f"psql exited: {self.read_rest()}") from e
        lines = self.read_until_mark(time.monotonic() + timeout, sql)
        return [line.split("\x1f") for line in lines if line]

    def read_until_mark(self, deadline: float, sql: str) -> list[str]:
        fd = self.proc.stdout.fileno()
        while (END_MARK + "\n").encode() not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"psql gave no answer in time to: {sql[:100]}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise Disconnected(f"psql exited: {self.read_rest()}")
                self.buf += chunk
        text, _, self.buf = self.buf.partition((END_MARK + "\n").encode())
        return text.decode(errors="replace").splitlines()

    def read_rest(self) -> str:
        """What psql printed last (its error), once it has exited."""
        try:
            self.proc.wait(timeout=5)
            rest = self.buf + self.proc.stdout.read()
        except (subprocess.TimeoutExpired, OSError, ValueError):
            rest = self.buf
        return rest.decode(errors="replace").strip()[-300:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def connect(cluster: Cluster, db: str, timeout: float = 30) -> Session:
    """A session that has answered a first statement; retried (every 0.1 s) until
    `timeout`, as the server may still be refusing connections."""
    deadline = time.monotonic() + timeout
    while True:
        s = Session(cluster, db)
        try:
            s.query("select 1", timeout=max(1.0, deadline - time.monotonic()))
            return s
        except Disconnected as e:
            s.close()
            if time.monotonic() >= deadline:
                raise BenchError(f"no session in {db} within {timeout:g} s: {e}") from e
            time.sleep(0.1)
