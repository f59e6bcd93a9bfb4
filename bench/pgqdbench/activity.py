"""What the server shows of the daemon: its sessions in pg_stat_activity, its ticker calls
there and in pg_stat_statements. Every query runs in bench_ctl under the script's
application_name, so none of them counts as the daemon's.

The daemon's backends are the client backends that are not this script's: the cluster
listens only on a unix socket in its own temporary directory, so the daemon and this
script are its only clients, and every session of the script carries application_name
'pgqd-bench' (PGAPPNAME). The daemon cannot be recognised positively instead: pgqd 3.5
sets no application_name, and client_addr and client_port are null on a unix socket."""

from __future__ import annotations

import math
import time

from .cluster import APP, CTL_DB, BenchError, Cluster, log
from .daemons import Daemon

DAEMON_BACKENDS = (
    "backend_type = 'client backend' and pid <> pg_backend_pid() "
    f"and application_name is distinct from '{APP}'"
)
TICKER_RE = r"pgq\s*\.\s*ticker\s*\(\s*\)"

# A ticker call as pg_stat_activity shows it (the last query of the ticker connection).
TICKING_SQL = (
    "select datname, extract(epoch from min(query_start)) from pg_stat_activity "
    f"where {DAEMON_BACKENDS} and query ~* '{TICKER_RE}' group by datname"
)
CLIENTS_SQL = (
    "select coalesce(application_name, ''), count(*) from pg_stat_activity "
    f"where {DAEMON_BACKENDS} group by 1"
)
BACKEND_PIDS_SQL = f"select pid from pg_stat_activity where {DAEMON_BACKENDS}"
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
TICKER_ACTIVITY_SQL = (
    "select datname, extract(epoch from query_start), state from pg_stat_activity "
    f"where {DAEMON_BACKENDS} and query ~* '{TICKER_RE}';"
)
TICKER_COUNTS_SQL = (
    "select d.datname, sum(p.calls) from pg_stat_statements p "
    "join pg_database d on d.oid = p.dbid "
    f"where p.toplevel and p.query ~* '{TICKER_RE}' group by 1;"
)


def ticking(c: Cluster) -> dict[str, float]:
    """Databases whose ticker connection has called pgq.ticker(): name -> query_start."""
    rows = c.psql(CTL_DB, TICKING_SQL, timeout=30, check=False)
    return {r[0]: float(r[1]) for r in rows if r[1]}


def ticker_counts(c: Cluster) -> dict[str, int]:
    """Ticker calls ended so far per database (pg_stat_statements)."""
    rows = c.psql(CTL_DB, TICKER_COUNTS_SQL, timeout=30, check=False)
    return {r[0]: int(r[1]) for r in rows if r[1]}


def clients(c: Cluster) -> dict[str, int]:
    """The daemon's sessions by application_name."""
    rows = c.psql(CTL_DB, CLIENTS_SQL, timeout=30, check=False)
    return {r[0]: int(r[1]) for r in rows}


def backend_pids(c: Cluster) -> list[int]:
    """The server processes serving the daemon's sessions."""
    return [int(r[0]) for r in c.psql(CTL_DB, BACKEND_PIDS_SQL, timeout=30, check=False)]


def sessions(c: Cluster) -> int:
    return int(c.value(CTL_DB, SESSIONS_SQL))


def wait_first_ticks(c: Cluster, dbs: list[str], daemon: Daemon, since: float,
                     timeout: float, counts_before: dict[str, int]) -> float:
    """Seconds from `since` until every one of `dbs` has had a ticker call; inf on
    timeout. A call's time is its query_start when pg_stat_activity shows it; a call
    already over when the session shows its next statement (a daemon that runs other
    work on the ticker's session right after the call) is seen by its count growing
    past `counts_before` in pg_stat_statements, at the time of that poll."""
    want = set(dbs)
    first: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        daemon.check_alive()
        for db, ts in ticking(c).items():
            if db in want and db not in first:
                first[db] = ts
        now = time.time()
        for db, n in ticker_counts(c).items():
            if db in want and db not in first and n > counts_before.get(db, 0):
                first[db] = now
        if len(first) == len(want):
            return max(first.values()) - since
        time.sleep(0.2)
    log(f"  only {len(first)}/{len(want)} databases ticking after {timeout:g} s")
    return math.inf


def wait_no_clients(c: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not clients(c):
            return
        time.sleep(0.2)
    raise BenchError(f"client sessions still open {timeout} s after the daemon stopped: "
                     f"{clients(c)}")


def ticker_calls(c: Cluster, dbs: list[str]) -> dict[str, tuple[int, float]]:
    """Per database of `dbs`: (number of a ticker call, its start time); see
    TICKER_ACTIVITY_SQL. Reads again the databases that were ambiguous (up to 3 s)."""
    want = set(dbs)
    found: dict[str, tuple[int, float]] = {}
    script = f"{TICKER_ACTIVITY_SQL}\n\\echo --\n{TICKER_COUNTS_SQL}\n\\echo --\n{TICKER_ACTIVITY_SQL}\n"
    for _ in range(15):
        rows = c.psql(CTL_DB, script, timeout=60)
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
