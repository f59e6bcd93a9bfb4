"""The server's own limit for a restart: one session to each of N databases, opened as
fast as the server accepts them, and the same with one `pgq.ticker()` call in each.

No daemon can have every database ticking after a restart sooner than the server can
start a backend for each, so the restart figure is reported as a ratio to this. The
sessions speak the protocol's start-up and simple query messages directly over the
cluster's unix socket (trust authentication), from one asyncio loop, with a fixed
number in flight (opening; an open session is held until the end and no longer counts);
the fastest of a few such numbers is the limit, whichever it is. Each run follows a
fresh `pg_ctl restart`, as the daemons' restart figure does (the clock starts when
`pg_ctl` returns): the first session in each database after a restart also builds that
database's relation cache init file, which the server removes when it starts."""

from __future__ import annotations

import asyncio
import resource
import struct
import time

from .cluster import APP, CTL_DB, BenchError, Cluster, log

PROTOCOL_3_0 = 196608
TICKER = "select pgq.ticker()"
TERMINATE = b"X\0\0\0\4"
IN_FLIGHT = (4, 16, 64, 256)  # sessions opening at once; the fastest wins
TIMEOUT = 600  # seconds for one whole measurement
# Every client backend but the one asking (the sessions opened here carry the script's
# application_name, so activity.wait_no_clients does not see them).
CLIENTS_SQL = ("select count(*) from pg_stat_activity "
               "where backend_type = 'client backend' and pid <> pg_backend_pid()")


def startup_message(db: str) -> bytes:
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", "postgres"), ("database", db),
                                   ("application_name", APP)))
    body = struct.pack("!i", PROTOCOL_3_0) + params + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def query_message(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


def data_row(body: bytes) -> list[str | None]:
    """The values of a DataRow message's body, as text (None for a null)."""
    (count,) = struct.unpack("!h", body[:2])
    values: list[str | None] = []
    at = 2
    for _ in range(count):
        (size,) = struct.unpack("!i", body[at : at + 4])
        at += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[at : at + size].decode(errors="replace"))
            at += size
    return values


async def until_ready(reader: asyncio.StreamReader, db: str,
                      rows: list[list[str | None]] | None = None) -> None:
    """Reads messages up to ReadyForQuery; an ErrorResponse is an error. With `rows`, the
    values of every DataRow (of every statement, in order) are appended to it."""
    while True:
        kind = await reader.readexactly(1)
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        body = await reader.readexactly(length - 4)
        if kind == b"D" and rows is not None:
            rows.append(data_row(body))
        if kind == b"E":
            fields = dict((f[:1], f[1:]) for f in body.split(b"\0") if f)
            raise BenchError(f"{db}: {fields.get(b'M', b'').decode(errors='replace')}")
        if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
            raise BenchError(f"{db}: the server asks for a password; the bench cluster "
                             "uses trust")
        if kind == b"Z":
            return


async def open_all(socket: str, dbs: list[str], in_flight: int, tick: bool) -> float:
    """Seconds until every database has a ready session (and, with `tick`, one ticker
    call answered); the sessions are all held until then, as a daemon holds them."""
    slots = asyncio.Semaphore(in_flight)
    writers: list[asyncio.StreamWriter] = []

    async def one(db: str) -> None:
        async with slots:
            reader, writer = await asyncio.open_unix_connection(socket)
            writers.append(writer)
            writer.write(startup_message(db))
            await until_ready(reader, db)
            if tick:
                writer.write(query_message(TICKER))
                await until_ready(reader, db)

    t = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(one(db) for db in dbs)), TIMEOUT)
        return time.monotonic() - t
    except asyncio.TimeoutError as e:
        raise BenchError(f"{len(dbs)} sessions not open within {TIMEOUT} s") from e
    finally:
        for w in writers:
            w.write(TERMINATE)
            w.close()
        # The sockets are closed for good only once the loop has run their callbacks.
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


def allow_sockets(n: int) -> None:
    """Raises the soft limit on open files to fit n sockets, as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 100
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise BenchError(f"{n} sessions need {want} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def wait_gone(c: Cluster, timeout: float = 120) -> None:
    """Until the server has no client backend left but the asking one."""
    deadline = time.monotonic() + timeout
    while int(c.value(CTL_DB, CLIENTS_SQL)) > 0:
        if time.monotonic() > deadline:
            raise BenchError(f"client backends still there {timeout:g} s after closing")
        time.sleep(0.2)


def measure(c: Cluster, dbs: list[str], tick: bool,
            in_flight: tuple[int, ...] = IN_FLIGHT) -> dict:
    """The fastest over `in_flight`, each after its own restart:
    {"secs", "in_flight", "tried": {in_flight: secs}}."""
    allow_sockets(len(dbs))
    socket = str(c.dir / f".s.PGSQL.{c.port}")
    tried: dict[int, float] = {}
    for n in in_flight:
        c.restart()
        tried[n] = asyncio.run(open_all(socket, dbs, n, tick))
        wait_gone(c)
    best = min(tried, key=tried.get)
    return {"secs": tried[best], "in_flight": best, "tried": tried}


def server_limits(c: Cluster, dbs: list[str]) -> dict:
    """Both limits for `dbs`: sessions only, and sessions with one ticker call each."""
    out = {}
    for key, tick in (("sessions", False), ("tick", True)):
        m = measure(c, dbs, tick)
        tried = ", ".join(f"{n}: {s:.2f} s" for n, s in m["tried"].items())
        log(f"  server's limit, {key}: {m['secs']:.2f} s at {m['in_flight']} in flight ({tried})")
        out[key] = m
    return out
