"""The figures of a run. A metric is one object: the table rows it fills (`figures`), how it
reads at the start of the measured window, during it and at its end, how it turns those
readings into figures, and its paragraph of docs/benchmarks.md (`method`). To add a
figure, add one object to METRICS."""

from __future__ import annotations

import math
import statistics
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from . import activity
from .cluster import Cluster, log
from .daemons import Daemon
from .procfs import own_cpu, pss_mb, server_cpu, vm_hwm_mb

# When a metric is measured.
START = "start"  # from the daemon's start; the run procedure fills it
WINDOW = "window"  # over the measured window, by the metric's own readings
RUN = "run"  # over the whole run, read when it ends (or filled by the procedure)


@dataclass(frozen=True)
class Figure:
    """One row of the table."""

    key: str  # in each run's dict and in the JSON
    label: str
    digits: int
    cap: str | None = None  # the option a timeout (inf) stands for: shown as ">N"


@dataclass
class Window:
    """What a metric may read: the cluster, the daemon, the measured databases, and the
    window's bounds (monotonic seconds)."""

    cluster: Cluster
    daemon: Daemon
    dbs: list[str]
    postmaster: int
    metrics_url: str | None = None  # the daemon's /metrics, when it has an HTTP listener
    t0: float = 0.0
    t1: float = 0.0

    @property
    def per_min(self) -> float:
        return 60 / (self.t1 - self.t0)


class Metric:
    figures: tuple[Figure, ...] = ()
    when = WINDOW
    # /proc readings bracket the window tightly: they are taken after every SQL reading
    # at its start and before any at its end (a psql session costs server CPU).
    reads_proc = False
    method = ""

    def begin(self, w: Window) -> Any:
        return None

    def sample(self, w: Window, state: Any) -> None:
        """Called at the window's start, every --sample-every seconds and at its end."""

    def end(self, w: Window, state: Any) -> Any:
        return None

    def result(self, w: Window, state: Any, reading: Any) -> dict:
        return {}

    def after_run(self, daemon: Daemon) -> dict:
        """Read once the run's last step is done, before the daemon stops."""
        return {}


@dataclass(eq=False)  # compared and hashed by identity, as every metric
class PerMinute(Metric):
    """A counter read at both ends of the window: its growth per minute."""

    figure: Figure
    read: Callable[[Window], float]
    method: str
    reads_proc: bool = False
    figures: tuple[Figure, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.figures = (self.figure,)

    def begin(self, w: Window) -> float:
        return self.read(w)

    def end(self, w: Window, state: float) -> float:
        return self.read(w)

    def result(self, w: Window, state: float, reading: float) -> dict:
        return {self.figure.key: (reading - state) * w.per_min}


class Connections(Metric):
    figures = (Figure("conns_mean", "connections held, mean", 0),
               Figure("conns_max", "connections held, max", 0))
    method = ("*connections held*: client backends in `pg_stat_activity` (not the script's), "
              "sampled\n  every few seconds: mean and max of the samples;")

    def begin(self, w: Window) -> dict:
        return {"samples": [], "apps": {}}

    def sample(self, w: Window, state: dict) -> None:
        by_app = activity.clients(w.cluster)
        state["samples"].append(sum(by_app.values()))
        for app, n in by_app.items():
            state["apps"][app] = max(state["apps"].get(app, 0), n)

    def result(self, w: Window, state: dict, reading: None) -> dict:
        return {"conns_mean": statistics.mean(state["samples"]),
                "conns_max": max(state["samples"]), "conns_by_app": state["apps"]}


class BackendPss(Metric):
    figures = (Figure("backend_pss", "client backends' PSS, MB", 1),
               Figure("backend_anon", "client backends' private memory, MB", 1))
    method = (
        "*client backends' PSS*: the server memory the daemon's sessions cost: at the end of\n"
        "  the window, the sum of `Pss` in `/proc/PID/smaps_rollup` over the backends counted\n"
        "  as connections held (each backend's private pages plus its share of every shared\n"
        "  page it maps, shared buffers included); *private memory*: the sum of `Pss_Anon`,\n"
        "  the part that closing those sessions would give back (heap, catalog and plan\n"
        "  caches); the rest is the backends' share of shared buffers and files, which stay\n"
        "  allocated whoever touched them;")

    def end(self, w: Window, state: None) -> tuple[float, float]:
        pids = activity.backend_pids(w.cluster)
        return pss_mb(pids), pss_mb(pids, "Pss_Anon")

    def result(self, w: Window, state: None, reading: tuple[float, float]) -> dict:
        return {"backend_pss": reading[0], "backend_anon": reading[1]}


class Scrape(Metric):
    figures = (Figure("scrape_ms", "/metrics scrape, ms, max", 1),)
    method = (
        "*/metrics scrape*: only for a daemon whose settings include `http_listen`: its\n"
        "  `/metrics` is fetched at every sample over the window (as a Prometheus scraping\n"
        "  every few seconds would); the longest fetch, rendering included;")

    def begin(self, w: Window) -> list[float]:
        return []

    def sample(self, w: Window, state: list[float]) -> None:
        if not w.metrics_url:
            return
        started = time.monotonic()
        with urllib.request.urlopen(w.metrics_url, timeout=10) as response:
            response.read()
        state.append((time.monotonic() - started) * 1000)

    def result(self, w: Window, state: list[float], reading: None) -> dict:
        return {"scrape_ms": max(state)} if state else {}


class TickerRate(Metric):
    figures = (Figure("rate_mean", "ticker calls/db/s, mean", 3),
               Figure("rate_min", "ticker calls/db/s, min db", 3),
               Figure("rate_max", "ticker calls/db/s, max db", 3))
    method = """\
*ticker calls/db/s*: per pgq database, at the start and at the end of the window,
  the start time of the latest `pgq.ticker()` call (`query_start` of the ticker
  connection in `pg_stat_activity`) paired with that call's number (`calls` in
  `pg_stat_statements`, which counts a call the moment it ends; a call still running
  is the next number). The rate is the number of calls between the two paired calls
  divided by the time between their starts: exact, with no quantisation to the
  window. Mean over the databases, and the slowest and fastest database.
  `pg_stat_user_functions` is not used for this: a backend publishes its function
  counts at most once a second, so a read lags by 0 or 1 call, and with a daemon
  ticking exactly every 1.000 s all databases lag in step, which biased the mean by up
  to 1/window (0.989 measured for a daemon that made 67 calls in 67 s)."""

    def begin(self, w: Window) -> tuple[dict, float]:
        t = time.monotonic()
        return activity.ticker_calls(w.cluster, w.dbs), time.monotonic() - t

    def end(self, w: Window, state: tuple[dict, float]) -> dict:
        return activity.ticker_calls(w.cluster, w.dbs)

    def result(self, w: Window, state: tuple[dict, float], after: dict) -> dict:
        before, snapshot_s = state
        rates = []
        for db in w.dbs:
            if db in before and db in after and after[db][1] > before[db][1]:
                (n0, q0), (n1, q1) = before[db], after[db]
                rates.append((n1 - n0) / (q1 - q0))
        if len(rates) < len(w.dbs):
            log(f"  ticker rate measured in {len(rates)} of {len(w.dbs)} databases only")
        found = len(rates)
        rates = rates or [math.nan]
        return {"rate_mean": statistics.mean(rates), "rate_min": min(rates),
                "rate_max": max(rates), "rate_dbs": found, "snapshot_s": snapshot_s}


class PeakRss(Metric):
    when = RUN
    figures = (Figure("rss", "daemon peak RSS, MB", 1),)
    method = "*daemon peak RSS*: `VmHWM` of `/proc/PID/status` at the end of the run (whole run)."

    def after_run(self, daemon: Daemon) -> dict:
        return {"rss": vm_hwm_mb(daemon.pid)}


@dataclass(eq=False)
class Timing(Metric):
    """A time the run procedure measures itself (scenarios.run_daemon)."""

    figure: Figure
    when: str
    method: str
    figures: tuple[Figure, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.figures = (self.figure,)


FIRST_ALL = Timing(
    Figure("first_all", "start until all dbs ticked, s", 2, cap="start_timeout"), START,
    "*start until all dbs ticked*: from the daemon's start until every pgq database has had\n"
    "a ticker call: the `query_start` of a connection whose query in `pg_stat_activity` is\n"
    "`pgq.ticker()`, or, for a call already over when its session shows the next statement,\n"
    "the poll at which its database's count in `pg_stat_statements` grew (polled every\n"
    "0.2 s: +-0.2 s, on one kept session in `bench_ctl`, `pg_stat_statements` read without\n"
    "its query texts).")
RESTART = Timing(
    Figure("restart", "restart until all dbs tick, s", 2, cap="restart_timeout"), RUN,
    "*restart until all dbs tick* (only in the runs with the first ticker_period): after the\n"
    "window, `pg_ctl restart -m fast` with the daemon running; from the moment `pg_ctl`\n"
    "returns (server accepting connections) until every pgq database has had a ticker call\n"
    "again, seen as above (all backends are new after a restart).")

# In table order.
METRICS: list[Metric] = [
    PerMinute(Figure("cpu", "daemon CPU, s/min", 3), lambda w: own_cpu(w.daemon.pid),
              "*daemon CPU*: utime + stime of the daemon's process (`/proc/PID/stat`), as "
              "seconds per minute;", reads_proc=True),
    PeakRss(),
    PerMinute(Figure("sessions", "new server sessions/min", 1),
              lambda w: activity.sessions(w.cluster),
              "*new server sessions*: delta of `sum(pg_stat_database.sessions)` over all "
              "databases\n  but the script's own `bench_ctl`, per minute;"),
    PerMinute(Figure("server_cpu", "server CPU, s/min", 2), lambda w: server_cpu(w.postmaster),
              """\
*server CPU*: the postmaster's utime + stime + cutime + cstime (its reaped children:
  every backend that has exited) plus utime + stime of its live children, delta over the
  window, seconds per minute. It includes the checkpointer, `pg_stat_statements`'
  bookkeeping and this script's `pg_stat_activity` samples (one short session every
  few seconds), the same for both daemons;""", reads_proc=True),
    Connections(),
    BackendPss(),
    Scrape(),
    TickerRate(),
    FIRST_ALL,
    RESTART,
]

FIGURES: list[Figure] = [f for m in METRICS for f in m.figures]


def measure_window(w: Window, seconds: float, sample_every: float) -> dict:
    """Runs the measured window (`seconds` long) and returns every window metric's figures."""
    metrics = [m for m in METRICS if m.when == WINDOW]
    states: dict[Metric, Any] = {}
    for m in sorted(metrics, key=lambda m: m.reads_proc):  # SQL first, /proc last
        states[m] = m.begin(w)
    w.t0 = time.monotonic()
    while True:
        w.daemon.check_alive()
        for m in metrics:
            m.sample(w, states[m])
        left = w.t0 + seconds - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(sample_every, left))
    readings: dict[Metric, Any] = {}
    for m in metrics:
        if m.reads_proc:
            readings[m] = m.end(w, states[m])
    w.t1 = time.monotonic()
    for m in metrics:
        if not m.reads_proc:
            readings[m] = m.end(w, states[m])
    out: dict = {"measured_s": w.t1 - w.t0}
    for m in metrics:
        out.update(m.result(w, states[m], readings[m]))
    return out


def after_run(daemon: Daemon) -> dict:
    out: dict = {}
    for m in METRICS:
        out.update(m.after_run(daemon))
    return out
