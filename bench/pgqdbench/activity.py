"""What the server shows of the daemon: its sessions in pg_stat_activity, its ticker calls
there and in pg_stat_statements. Every query runs in bench_ctl under the script's
application_name, so none of them counts as the daemon's.

The daemon's backends are the client backends that are not this script's: the cluster
listens only on unix sockets in its own temporary directory, so the daemon and this
script are its only clients (the script through a second socket directory of its own,
so that it never queues behind a daemon's connections), and every session of the script
carries application_name 'pgqd-bench' (PGAPPNAME). The daemon cannot be recognised
positively instead: pgqd 3.5 sets no application_name, and client_addr and client_port
are null on a unix socket."""

from __future__ import annotations

import math
import time
from typing import Iterable

from .cluster import APP, CTL_DB, BenchError, Cluster, log
from .daemons import Daemon
from . import session

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
# pg_stat_statements is read without its query texts (`showtext := false`): with texts
# it reads the whole texts file (an entry per statement and database: 46 ms a read at
# 1000 databases) and the regex runs over every entry. Which queryids are ticker calls
# is looked up by text once per queryid and remembered (TickerIds); a queryid is the
# same statement in every database (the pgq databases are clones of one template).
# A ticker call's queryid is the same in every database and from either daemon.
STATEMENT_IDS_SQL = (
    "select distinct queryid from pg_stat_statements(false) "
    "where toplevel and queryid <> all('{ids}'::bigint[]) and queryid is not null"
)
STATEMENT_KINDS_SQL = (
    f"select queryid, bool_or(query ~* '{TICKER_RE}') from pg_stat_statements(true) "
    "where queryid = any('{ids}'::bigint[]) group by 1"
)
TICKER_COUNTS_SQL = (
    "select d.datname, sum(p.calls) from pg_stat_statements(false) p "
    "join pg_database d on d.oid = p.dbid "
    "where p.toplevel and p.queryid = any('{ids}'::bigint[]) group by 1"
)
# One poll of wait_first_ticks in one statement: 't' rows as TICKING_SQL, 'c' rows as
# TICKER_COUNTS_SQL, 'n' rows: queryids not classified yet (rare: a daemon's statement
# seen for the first time in this cluster).
POLL_SQL = (
    f"select 't', datname, extract(epoch from min(query_start))::text from pg_stat_activity "
    f"where {DAEMON_BACKENDS} and query ~* '{TICKER_RE}' group by datname "
    "union all select 'c', d.datname, sum(p.calls)::text from pg_stat_statements(false) p "
    "join pg_database d on d.oid = p.dbid "
    "where p.toplevel and p.queryid = any('{ids}'::bigint[]) group by d.datname "
    "union all select distinct 'n', '', queryid::text from pg_stat_statements(false) "
    "where toplevel and queryid <> all('{known}'::bigint[]) and queryid is not null"
)


def read(c: Cluster, sql: str, timeout: float = 30) -> list[list[str]]:
    """A psql in bench_ctl, tried again for up to `timeout` seconds when it fails: a
    daemon opening thousands of sessions at once fills the server's listen queue
    (somaxconn), and a connection is then refused (EAGAIN) until it drains. A read
    that fails silently would be wrong (no counts before a start: every database
    "ticked" at the first poll)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return c.psql(CTL_DB, sql, timeout=timeout)
        except BenchError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def id_array(ids: Iterable[int]) -> str:
    return "{" + ",".join(str(i) for i in sorted(ids)) + "}"


class TickerIds:
    """Which statement queryids of a cluster are ticker calls (the regex over their
    text), each looked up once."""

    kinds: dict[str, dict[int, bool]] = {}  # cluster directory -> queryid -> is a ticker call

    def __init__(self, c: Cluster):
        self.c = c
        self.known = TickerIds.kinds.setdefault(str(c.dir), {})

    @property
    def tickers(self) -> str:
        return id_array(i for i, ticker in self.known.items() if ticker)

    @property
    def all(self) -> str:
        return id_array(self.known)

    def classify(self, ids: Iterable[int]) -> None:
        """Looks up the texts of these queryids (one read of the texts file)."""
        new = [i for i in ids if i not in self.known]
        if not new:
            return
        rows = read(self.c, STATEMENT_KINDS_SQL.format(ids=id_array(new)), timeout=60)
        # An entry gone meanwhile, or with its text unreadable (null), stays unknown:
        # looked up again when it shows up again.
        self.known.update({int(r[0]): r[1] == "t" for r in rows if r[1]})

    def refresh(self) -> None:
        """Classifies every queryid in pg_stat_statements now."""
        rows = read(self.c, STATEMENT_IDS_SQL.format(ids=self.all), timeout=60)
        self.classify(int(r[0]) for r in rows)


def ticker_counts(c: Cluster) -> dict[str, int]:
    """Ticker calls ended so far per database (pg_stat_statements)."""
    ids = TickerIds(c)
    ids.refresh()
    rows = read(c, TICKER_COUNTS_SQL.format(ids=ids.tickers))
    return {r[0]: int(r[1]) for r in rows if r[1]}


def clients(c: Cluster) -> dict[str, int]:
    """The daemon's sessions by application_name."""
    rows = read(c, CLIENTS_SQL)
    return {r[0]: int(r[1]) for r in rows}


def backend_pids(c: Cluster) -> list[int]:
    """The server processes serving the daemon's sessions."""
    return [int(r[0]) for r in read(c, BACKEND_PIDS_SQL)]


def sessions(c: Cluster) -> int:
    return int(read(c, SESSIONS_SQL)[0][0])


class Poll:
    """wait_first_ticks' reads, on one kept session in bench_ctl (a psql per poll would
    cost the server a backend start five times a second, during the very figures it
    measures): which databases show a ticker call in pg_stat_activity (query_start),
    and their ticker calls ended so far."""

    def __init__(self, c: Cluster, timeout: float):
        self.c, self.ids = c, TickerIds(c)
        self.session = session.connect(c, CTL_DB, timeout)

    def read(self) -> tuple[dict[str, float], dict[str, int]]:
        for _ in range(2):
            rows = self.session.query(POLL_SQL.format(ids=self.ids.tickers, known=self.ids.all))
            new = [int(r[2]) for r in rows if r[0] == "n"]
            if not new:
                break
            # A statement seen for the first time may be a ticker call: read again once
            # it is classified (one still unknown then is counted from the next poll).
            self.ids.classify(new)
        ticking = {r[1]: float(r[2]) for r in rows if r[0] == "t" and r[2]}
        counts = {r[1]: int(r[2]) for r in rows if r[0] == "c" and r[2]}
        return ticking, counts

    def close(self) -> None:
        self.session.close()


def wait_first_ticks(c: Cluster, dbs: list[str], daemon: Daemon, since: float,
                     timeout: float, counts_before: dict[str, int]) -> float:
    """Seconds from `since` until every one of `dbs` has had a ticker call; inf on
    timeout. A call's time is its query_start when pg_stat_activity shows it; a call
    already over when the session shows its next statement (a daemon that runs other
    work on the ticker's session right after the call) is seen by its count growing
    past `counts_before` (from ticker_counts) in pg_stat_statements, at the time of
    that poll. Polled every 0.2 s on one kept session."""
    want = set(dbs)
    first: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    poll = Poll(c, timeout)
    try:
        while time.monotonic() < deadline:
            daemon.check_alive()
            ticking, counts = poll.read()
            now = time.time()
            for db, ts in ticking.items():
                if db in want and db not in first:
                    first[db] = ts
            for db, n in counts.items():
                if db in want and db not in first and n > counts_before.get(db, 0):
                    first[db] = now
            if len(first) == len(want):
                return max(first.values()) - since
            time.sleep(0.2)
    finally:
        poll.close()
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
    ids = TickerIds(c)
    ids.refresh()  # the daemon's statements are all known by now: its calls have ended
    counts_sql = TICKER_COUNTS_SQL.format(ids=ids.tickers)
    script = f"{TICKER_ACTIVITY_SQL}\n\\echo --\n{counts_sql};\n\\echo --\n{TICKER_ACTIVITY_SQL}\n"
    for _ in range(15):
        rows = read(c, script, timeout=60)
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
