"""What one reading of the queue figures costs the server in CPU, measured in place
(`bench/run.sh --reading-cost`).

Our pgqd keeps one session per database; on it, it calls `pgq.ticker()` every second and,
every `queue_stats_period`, sends the reading: the statements CONSUMERS and QUEUES of
src/jobs/queue_stats.rs in one simple-protocol Query message. Whole-server CPU over a
window is too coarse to show what that adds (hundredths of a second a minute at 100
databases), so this measures each call on its own backend: one session per pgq
database, driven as the daemon drives it, each call timed by the backend's own time on a
CPU (/proc/PID/schedstat) read just before its Query is sent and shortly after
ReadyForQuery has arrived. Only this script uses those sessions, so between its calls
the backends are idle and the difference is that call's server CPU, exactly.

The SQL is read from the Rust source at run time, so it is always what the daemon in
this working tree sends. The sessions speak the protocol over the cluster's unix socket
with connect_rate's helpers (trust authentication), from one asyncio loop."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

from .cluster import CTL_DB, QUEUE, TPL_DB, BenchError, Cluster, log
from .connect_rate import TERMINATE, allow_sockets, query_message, startup_message, until_ready
from .latency import percentile
from .procfs import on_cpu_ns
from .report import REPO, cpu_model, working_tree

SOURCE = REPO / "src" / "jobs" / "queue_stats.rs"
# How the daemon joins the two statements (queue_stats.rs's READING); checked, not parsed.
JOIN = 'format!("{CONSUMERS};\\n{QUEUES}")'

READING, TICKER, FLOOR = "reading", "ticker call", "select 1"
TICKER_SQL = "select pgq.ticker(), pg_backend_pid()"  # as the daemon calls it
FLOOR_SQL = "select 1"
SETTLE = 0.002  # seconds after ReadyForQuery before the second reading of the CPU time
QUERY_TIMEOUT = 60  # seconds for one call's answer
OPEN_TIMEOUT = 60  # seconds for one session to open
LEAD = 1.0  # seconds from the last session opened until the first call
PROGRESS_EVERY = 60  # seconds between progress lines
# A string constant of the Rust source: `const NAME: &str = "...";`.
CONST_RE = r'\bconst\s+{name}\s*:\s*&(?:\'static\s+)?str\s*=\s*"((?:[^"\\]|\\.)*)"\s*;'
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def rust_unescape(text: str) -> str:
    """A Rust string literal's contents as the string it denotes: its escapes, and a
    backslash at the end of a line, which drops the line break and the next line's
    leading whitespace."""
    def one(m: re.Match) -> str:
        e = m.group(1)
        if e[0] == "\n":
            return ""
        if e.startswith("u{"):
            return chr(int(e[2:-1], 16))
        if e.startswith("x"):
            return chr(int(e[1:], 16))
        if e not in ESCAPES:
            raise BenchError(f"{SOURCE}: unknown escape \\{e} in a string constant")
        return ESCAPES[e]
    return re.sub(r"\\(\n\s*|u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)", one, text, flags=re.S)


def string_const(source: str, name: str) -> str:
    m = re.search(CONST_RE.format(name=name), source, flags=re.S)
    if not m:
        raise BenchError(f"no `const {name}: &str = \"...\";` in {SOURCE}: the reading's SQL "
                         "has moved; update bench/pgqdbench/reading_cost.py")
    return rust_unescape(m.group(1))


def reading_sql(path: Path = SOURCE) -> str:
    """The reading as the daemon sends it: `format!("{CONSUMERS};\\n{QUEUES}")`."""
    try:
        source = path.read_text()
    except OSError as e:
        raise BenchError(f"cannot read the reading's SQL: {e}") from e
    sql = f"{string_const(source, 'CONSUMERS')};\n{string_const(source, 'QUEUES')}"
    if JOIN not in source:
        log(f"warning: {path.name} no longer joins the statements as {JOIN}; "
            "measuring that join anyway")
    return sql


def source_revision() -> str:
    """The commit the source is at, and whether queue_stats.rs differs from it."""
    try:
        commit, dirty = working_tree(str(SOURCE.relative_to(REPO)))
    except (OSError, subprocess.CalledProcessError):
        return "not in a git checkout"
    return f"commit {commit}" + (", with local changes" if dirty else "")


@dataclass
class Call:
    db: str
    at: float  # planned, in seconds after the start
    kind: str  # READING, TICKER or FLOOR
    ms: float  # the backend's time on a CPU for it
    first: bool  # the session's first call of this kind
    rows: int  # DataRows in the answer (all statements)
    late: float  # seconds after its planned time that it was sent


def plan(i: int, n: int, period: float, duration: float, floors: int) -> list[tuple[float, str]]:
    """Session i of n: its calls as (seconds after the start, kind), in time order. A
    ticker call every second, i/n s past it (the sessions spread over the second); a
    reading every `period` s, the sessions spread over the period, each halfway between
    two of its ticker calls; `floors` select 1's, each halfway between two readings."""
    past = i / n
    calls = [(past + s, TICKER) for s in range(math.ceil(duration)) if past + s < duration]
    offset = i * period / n
    for k in range(math.ceil(duration / period) + 1):
        reading = past + 0.5 + math.floor(offset + k * period)
        between = past + 0.5 + math.floor(offset + k * period + period / 2)
        if reading < duration:
            calls.append((reading, READING))
        if k < floors and between < duration:
            calls.append((between, FLOOR))
    return sorted(calls)


class Backend:
    """One session in one database: its backend's pid, and calls timed by that
    backend's CPU time."""

    def __init__(self, db: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.db, self.reader, self.writer = db, reader, writer
        self.pid = 0

    @classmethod
    async def open(cls, socket: str, db: str) -> "Backend":
        reader, writer = await asyncio.open_unix_connection(socket)
        b = cls(db, reader, writer)
        writer.write(startup_message(db))
        await b.answer("the session's start", OPEN_TIMEOUT)
        writer.write(query_message("select pg_backend_pid()"))
        b.pid = int((await b.answer("select pg_backend_pid()", QUERY_TIMEOUT))[0][0])
        return b

    async def answer(self, what: str, timeout: float) -> list[list[str | None]]:
        """The rows of the answer, up to ReadyForQuery."""
        rows: list[list[str | None]] = []
        try:
            await asyncio.wait_for(until_ready(self.reader, self.db, rows), timeout)
        except asyncio.TimeoutError as e:
            raise BenchError(f"{self.db}: no answer to {what} within {timeout} s") from e
        return rows

    async def timed(self, sql: str, what: str) -> tuple[float, list[list[str | None]]]:
        """Runs `sql`; returns the milliseconds its backend spent on a CPU for it, and
        its rows. The second reading of the CPU time comes SETTLE s after ReadyForQuery:
        the backend sends ReadyForQuery before it has gone back to waiting, and its
        count is up to date only once it sleeps."""
        before = on_cpu_ns(self.pid)
        self.writer.write(query_message(sql))
        rows = await self.answer(what, QUERY_TIMEOUT)
        await asyncio.sleep(SETTLE)
        return (on_cpu_ns(self.pid) - before) / 1e6, rows

    async def drive(self, calls: list[tuple[float, str]], start: float, sql: dict[str, str],
                    out: list[Call]) -> None:
        """Makes `calls` (seconds after `start`, on the loop's clock), appending to `out`."""
        loop = asyncio.get_running_loop()
        seen: set[str] = set()
        for at, kind in calls:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            late = loop.time() - start - at
            try:
                ms, rows = await self.timed(sql[kind], kind)
            except (OSError, EOFError) as e:  # the backend or the server went away
                raise BenchError(f"{self.db}: backend {self.pid} lost during a {kind}: "
                                 f"{e}") from e
            if kind == TICKER and kind not in seen and rows and rows[0][1] != str(self.pid):
                raise BenchError(f"{self.db}: the ticker call ran in backend {rows[0][1]}, "
                                 f"not {self.pid}")
            out.append(Call(self.db, at, kind, ms, kind not in seen, len(rows), late))
            seen.add(kind)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(TERMINATE)
            self.writer.close()


async def progress(out: list[Call], every: float) -> None:
    """A log line every `every` s until cancelled."""
    while True:
        await asyncio.sleep(every)
        readings = [c for c in out if c.kind == READING]
        log(f"  {len(readings)} readings, {len(out) - len(readings)} other calls so far")


async def measure(socket: str, dbs: list[str], period: float, duration: float,
                  floors: int, sql: str) -> list[Call]:
    """One session per database, each driven as `plan` says for `duration` s; every
    call made, in the order they ended."""
    backends: list[Backend] = []
    out: list[Call] = []
    try:
        for db in dbs:
            try:
                backends.append(await Backend.open(socket, db))
            except (OSError, EOFError) as e:
                raise BenchError(f"{db}: no session: {e}") from e
        loop = asyncio.get_running_loop()
        start = loop.time() + LEAD
        log(f"{len(backends)} sessions open; measuring for {duration:g} s")
        texts = {READING: sql, TICKER: TICKER_SQL, FLOOR: FLOOR_SQL}
        tasks = [asyncio.ensure_future(b.drive(plan(i, len(dbs), period, duration, floors),
                                               start, texts, out))
                 for i, b in enumerate(backends)]
        ticker = asyncio.ensure_future(progress(out, max(PROGRESS_EVERY, period)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception():
                    raise t.exception()
        finally:
            for t in [*tasks, ticker]:
                t.cancel()
            await asyncio.gather(*tasks, ticker, return_exceptions=True)
    finally:
        for b in backends:
            b.close()
        # The sockets are closed for good only once the loop has run their callbacks.
        await asyncio.gather(*(b.writer.wait_closed() for b in backends),
                             return_exceptions=True)
    return out


def figures(values: list[float]) -> dict:
    """count, median, mean, p90 (nearest rank) and max."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values),
            "mean": statistics.fmean(values), "p90": percentile(values, 0.9),
            "max": max(values)}


def row(label: str, f: dict) -> str:
    if not f["n"]:
        return f"| {label} | 0 | - | - | - | - |"
    cells = " | ".join(f"{f[k]:.3f}" for k in ("median", "mean", "p90", "max"))
    return f"| {label} | {f['n']} | {cells} |"


def per_minute(mean_ms: float, dbs: int, period: float) -> float:
    """Seconds of server CPU a minute: mean ms x databases x calls a minute."""
    return mean_ms * dbs * 60 / period / 1000


class ReadingCost:
    """`bench/run.sh --reading-cost`: the cluster, the measurement, the report."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cluster: Cluster | None = None

    def run(self) -> int:
        a = self.args
        sql = reading_sql()  # before the cluster: a missing constant fails at once
        revision = source_revision()
        self.cluster = c = Cluster(max(100, a.reading_dbs + 20), a.keep)
        log(f"initdb in {c.dir} (port {c.port})")
        c.init()
        if a.reading_consumers:
            # In the template, so every clone has them.
            c.psql(TPL_DB, "".join(f"select pgq.register_consumer('{QUEUE}', 'c{k}');\n"
                                   for k in range(1, a.reading_consumers + 1)))
        c.ensure_pgq_dbs(a.reading_dbs)
        allow_sockets(a.reading_dbs)
        started = datetime.datetime.now(datetime.timezone.utc)
        load = os.getloadavg()
        log(f"reading cost: {a.reading_dbs} databases, a reading every {a.reading_period:g} s "
            f"per session, {a.reading_duration:g} s")
        socket = str(c.dir / f".s.PGSQL.{c.port}")
        calls = asyncio.run(measure(socket, c.pgq_dbs[: a.reading_dbs], a.reading_period,
                                    a.reading_duration, a.reading_floor, sql))
        text = report(calls, a, c, sql, revision, started, load, os.getloadavg())
        print()
        print(text)
        if a.json:
            Path(a.json).write_text(json.dumps([asdict(x) for x in calls], indent=1) + "\n")
        if a.out != "-":
            path = Path(a.out)
            earlier = path.read_text() if path.exists() else ""
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(earlier + ("\n" if earlier.strip() else "") + text)
            log(f"{'appended to' if earlier.strip() else 'wrote'} {a.out}")
        return 0


def method(a: argparse.Namespace) -> str:
    """The method in a paragraph, wrapped."""
    return textwrap.fill(f"""\
Method (`bench/pgqdbench/reading_cost.py`): a throwaway cluster with the benchmark's
settings, {a.reading_dbs} clones of `bench_tpl` (pgq, one queue), one session each over
the unix socket, driven like the daemon's: `{TICKER_SQL}` every second and, every
{a.reading_period:g} s, the reading (`CONSUMERS;\\nQUEUES` from `src/jobs/queue_stats.rs`,
one simple-protocol Query); sessions spread over the second and over the period,
readings halfway between ticker calls. A call's cost is its backend's time on a CPU
(`/proc/PID/schedstat`, first field, ns) from just before its Query to {SETTLE * 1000:g}
ms after ReadyForQuery (no one else uses the backend). A session's first reading (loading
relation and catalog caches) is shown apart, its first ticker call left out; `select 1`
({a.reading_floor} per session) is the floor of any round trip.""",
                         width=88, break_on_hyphens=False, break_long_words=False)


def report(calls: list[Call], a: argparse.Namespace, c: Cluster, sql: str, revision: str,
           started: datetime.datetime, load: tuple[float, ...],
           load_end: tuple[float, ...]) -> str:
    n, period = a.reading_dbs, a.reading_period
    steady = figures([x.ms for x in calls if x.kind == READING and not x.first])
    first = figures([x.ms for x in calls if x.kind == READING and x.first])
    ticker = figures([x.ms for x in calls if x.kind == TICKER and not x.first])
    floor = figures([x.ms for x in calls if x.kind == FLOOR])
    rows = sorted({x.rows for x in calls if x.kind == READING})
    late = [x.late * 1000 for x in calls]
    consumers = (f"{a.reading_consumers} consumer{'s' if a.reading_consumers > 1 else ''} "
                 f"registered on the queue in every database (so the consumer statement "
                 f"returns {'a row' if a.reading_consumers == 1 else 'rows'})"
                 if a.reading_consumers else
                 "no consumer registered (the consumer statement returns no row)")
    cpu = cpu_model()
    out = [
        f"## Server CPU of one queue-stats reading, in place: {n} databases, every "
        f"{period:g} s", "",
        f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; measured for "
        f"{a.reading_duration:g} s. Machine: {os.cpu_count()} x {cpu}; load average "
        f"(1, 5, 15 min) at the start {', '.join(f'{x:.2f}' for x in load)}, at the end "
        f"{', '.join(f'{x:.2f}' for x in load_end)}. PostgreSQL "
        f"{c.value(CTL_DB, 'show server_version')}, pgq {c.value(TPL_DB, 'select pgq.version()')}.",
        "",
        f"Reading: `src/jobs/queue_stats.rs` at {revision} ({len(sql)} characters, "
        f"sha256 {hashlib.sha256(sql.encode()).hexdigest()[:12]}); {consumers}; each reading "
        f"returned {' or '.join(map(str, rows)) or '-'} row(s) in all. Calls started at most "
        f"{max(late, default=0):.1f} ms after their planned time (p99 "
        f"{percentile(late, 0.99) if late else 0:.1f} ms).",
        "",
        method(a),
        "",
        "| call | count | median, ms | mean, ms | p90, ms | max, ms |",
        "|---|---|---|---|---|---|",
        row("reading (steady state)", steady),
        row("first reading in a session", first),
        row(f"`{TICKER_SQL}`", ticker),
        row("`select 1`", floor),
        "",
    ]
    if steady["n"]:
        out.append(
            f"Readings' server CPU at {n} databases (steady mean × {n} × 60 / period): "
            f"**{per_minute(steady['mean'], n, period):.3f} s/min** at a {period:g} s period"
            + (f", {per_minute(steady['mean'], n, 30):.3f} s/min at 30 s" if period != 30 else "")
            + (f"; the ticker calls, for comparison: "
               f"{per_minute(ticker['mean'], n, 1):.3f} s/min" if ticker["n"] else "") + ".")
        out.append("")
    return "\n".join(out)
