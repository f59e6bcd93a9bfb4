"""Delivery latency (`bench/run.sh --latency`): how long an event takes from its commit to
a consumer that receives it through `pgq.next_batch` + `pgq.get_batch_events`, with each
daemon alone ticking the cluster in turn, at each ticker_period, with pgq's default queue
settings and with `ticker_max_lag` lowered to 0; and across `pg_ctl restart -m fast`.

A producer thread commits events at a steady rate, each on a kept psql session in
autocommit, and notes when each commit was acknowledged; a consumer thread, on its own
session, asks for the next batch every POLL_EVERY seconds, and notes when each event
came back. Both clocks are this process's monotonic clock."""

from __future__ import annotations

import argparse
import math
import threading
import time
from dataclasses import dataclass

from . import activity
from .cluster import QUEUE, BenchError, Cluster, log
from .daemons import Daemon, write_ini
from .scenarios import daemons, per_dbs
from .session import connect

RATE = 20  # events committed per second
POLL_EVERY = 0.05  # seconds the consumer sleeps when next_batch returns no batch
CONSUMER = "bench_latency"
DRAIN_TIMEOUT = 30  # seconds for the last events of a window to be delivered
RESTART_EVENTS = 10  # seconds of events committed after the restart

INSERT_SQL = f"select pgq.insert_event('{QUEUE}', 'latency', '{{data}}');"
NEXT_BATCH_SQL = f"select pgq.next_batch('{QUEUE}', '{CONSUMER}');"
BATCH_EVENTS_SQL = "select ev_data from pgq.get_batch_events({batch});"
FINISH_BATCH_SQL = "select pgq.finish_batch({batch});"
# A fresh registration before each window: the consumer starts at the latest tick, with
# no backlog of an earlier window.
REGISTER_SQL = (
    f"select pgq.unregister_consumer('{QUEUE}', '{CONSUMER}');\n"
    f"select pgq.register_consumer('{QUEUE}', '{CONSUMER}');\n"
)
SET_MAX_LAG_SQL = f"select pgq.set_queue_config('{QUEUE}', 'ticker_max_lag', '{{lag}}');\n"


@dataclass(frozen=True)
class QueueSetting:
    label: str  # as the report shows it
    max_lag: str  # the queue's ticker_max_lag


PGQ_DEFAULTS = QueueSetting("pgq defaults", "3 seconds")
QUEUE_SETTINGS = (PGQ_DEFAULTS, QueueSetting("ticker_max_lag = 0", "0"))


class Producer(threading.Thread):
    """Commits one event every 1/RATE s until stopped; `commits`: event number -> the
    monotonic time its commit was acknowledged."""

    def __init__(self, cluster: Cluster, db: str, tag: str):
        super().__init__(daemon=True)
        self.cluster, self.db, self.tag = cluster, db, tag
        self.commits: dict[int, float] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            session = connect(self.cluster, self.db)
        except BaseException as e:  # reported by the thread that joins this one
            self.error = e
            return
        try:
            start = time.monotonic()
            n = 0
            while not self.stop.wait(max(0.0, start + n / RATE - time.monotonic())):
                session.query(INSERT_SQL.format(data=f"{self.tag}:{n}"))
                self.commits[n] = time.monotonic()
                n += 1
        except BaseException as e:
            self.error = e
        finally:
            session.close()


class Consumer(threading.Thread):
    """Polls for batches until stopped; `delivered`: event number -> the monotonic time
    get_batch_events returned it. Events of other tags (earlier windows) are skipped."""

    def __init__(self, cluster: Cluster, db: str, tag: str):
        super().__init__(daemon=True)
        self.cluster, self.db, self.tag = cluster, db, tag
        self.delivered: dict[int, float] = {}
        self.ready, self.stop = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            session = connect(self.cluster, self.db)
        except BaseException as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        try:
            while not self.stop.is_set():
                if not self.one_batch(session):
                    self.stop.wait(POLL_EVERY)
        except BaseException as e:
            self.error = e
        finally:
            session.close()

    def one_batch(self, session) -> bool:
        """Takes, reads and finishes the next batch; False when there is none."""
        rows = session.query(NEXT_BATCH_SQL)  # a null (no batch) comes as no row
        batch = rows[0][0] if rows else ""
        if not batch:
            return False
        rows = session.query(BATCH_EVENTS_SQL.format(batch=batch))
        now = time.monotonic()
        for row in rows:
            tag, _, n = row[0].partition(":")
            if tag == self.tag:
                self.delivered.setdefault(int(n), now)
        session.query(FINISH_BATCH_SQL.format(batch=batch))
        return True


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_figures(delays: list[float]) -> dict:
    """p50, p95 and max of the delays (inf: never delivered), and how many arrived."""
    return {"events": len(delays), "delivered": sum(math.isfinite(d) for d in delays),
            "p50": percentile(delays, 0.5), "p95": percentile(delays, 0.95),
            "max": max(delays)} if delays else {"events": 0, "delivered": 0}


class Latency:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cluster: Cluster | None = None
        self.windows = 0
        quick = args.quick
        self.periods = ["1"] if quick else ["1", "0.1"]
        self.settings = QUEUE_SETTINGS[1:] if quick else QUEUE_SETTINGS
        self.window = 4.0 if quick else args.latency_window
        self.warmup = 1.0 if quick else 3.0
        # The latency runs use one database: the timeouts' value for one.
        self.start_timeout = per_dbs(args.start_timeout, 1)
        self.restart_timeout = per_dbs(args.restart_timeout, 1)
        self.restart_events = 2.0 if quick else RESTART_EVENTS

    def run(self) -> list[dict]:
        """Every ticker_period, each daemon in turn; one dict of figures per measurement."""
        a = self.args
        self.cluster = c = Cluster(100, a.keep)
        log(f"initdb in {c.dir} (port {c.port})")
        c.init()
        c.ensure_pgq_dbs(1)
        results = []
        for period in self.periods:
            for who, binary, own in daemons(a):
                results += self.run_daemon(who, binary, {"ticker_period": period, **own})
        return results

    def run_daemon(self, who: str, binary: str, ini: dict[str, str]) -> list[dict]:
        """One daemon at one ticker_period: a window per queue setting, then (at the first
        period) the restart."""
        a, c = self.args, self.cluster
        db, period = c.pgq_dbs[0], ini["ticker_period"]
        path = c.dir / f"latency-{who.replace(' ', '')}-{period}.ini"
        write_ini(path, c, ini)
        activity.wait_no_clients(c)
        counts = activity.ticker_counts(c)
        d = Daemon(binary, path, path.with_suffix(".log"))
        out = []
        try:
            if math.isinf(activity.wait_first_ticks(c, [db], d, time.time(), self.start_timeout,
                                                    counts)):
                raise BenchError(f"{who} did not tick within {self.start_timeout:g} s")
            for setting in self.settings:
                log(f"latency: {who}, ticker_period {period}, {setting.label}")
                out.append({"daemon": who, "ticker_period": float(period), "restart": False,
                            "queue": setting.label, **self.steady(d, setting)})
                log("  " + summary(out[-1]))
            if period == self.periods[0] and a.restart != "none":
                for setting in self.settings:
                    log(f"latency: {who}, ticker_period {period}, {setting.label}, "
                        "across a restart")
                    out.append({"daemon": who, "ticker_period": float(period), "restart": True,
                                "queue": setting.label, **self.across_restart(d, setting)})
                    log("  " + summary(out[-1]))
        finally:
            d.stop()
        return out

    def start_pair(self, d: Daemon) -> tuple[Producer, Consumer]:
        """A consumer registered afresh and connected, then a producer, for a new tag."""
        c = self.cluster
        self.windows += 1
        tag = f"w{self.windows}"
        consumer = Consumer(c, c.pgq_dbs[0], tag)
        consumer.start()
        consumer.ready.wait(60)
        producer = Producer(c, c.pgq_dbs[0], tag)
        producer.start()
        return producer, consumer

    def steady(self, d: Daemon, setting: QueueSetting) -> dict:
        """One measured window: events committed during the warm-up are not counted."""
        c = self.cluster
        c.psql(c.pgq_dbs[0], SET_MAX_LAG_SQL.format(lag=setting.max_lag) + REGISTER_SQL)
        producer, consumer = self.start_pair(d)
        t0 = time.monotonic()
        self.sleep(d, self.warmup + self.window, producer, consumer)
        self.stop(producer)
        measured = [n for n, at in producer.commits.items() if at >= t0 + self.warmup]
        self.drain(d, consumer, measured, time.monotonic() + DRAIN_TIMEOUT)
        delays = [consumer.delivered.get(n, math.inf) - producer.commits[n] for n in measured]
        return latency_figures(delays)

    def across_restart(self, d: Daemon, setting: QueueSetting) -> dict:
        """pg_ctl restart -m fast with the daemon running, then events from the moment the
        server accepts connections."""
        c = self.cluster
        c.psql(c.pgq_dbs[0], SET_MAX_LAG_SQL.format(lag=setting.max_lag) + REGISTER_SQL)
        c.restart()
        up = time.monotonic()
        producer, consumer = self.start_pair(d)
        self.sleep(d, self.restart_events, producer, consumer)
        self.stop(producer)
        measured = sorted(producer.commits)
        self.drain(d, consumer, measured, up + self.restart_timeout)
        delays = [consumer.delivered.get(n, math.inf) - producer.commits[n] for n in measured]
        return {**latency_figures(delays), "produced_s": self.restart_events,
                "first_commit": producer.commits[measured[0]] - up if measured else math.nan,
                "first_delay": delays[0] if delays else math.nan}

    def sleep(self, d: Daemon, seconds: float, *threads: Producer | Consumer) -> None:
        """Waits, checking that the daemon and the threads are alive."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            d.check_alive()
            for th in threads:
                if th.error:
                    raise BenchError(f"{type(th).__name__.lower()}: {th.error}")
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))

    def stop(self, producer: Producer) -> None:
        producer.stop.set()
        producer.join(60)
        if producer.error or producer.is_alive():
            raise BenchError(f"producer: {producer.error or 'did not stop within 60 s'}")

    def drain(self, d: Daemon, consumer: Consumer, measured: list[int], deadline: float) -> None:
        """Waits until every measured event is delivered or the deadline passes, then stops
        the consumer."""
        while time.monotonic() < deadline and not all(n in consumer.delivered for n in measured):
            self.sleep(d, 0.1, consumer)
        consumer.stop.set()
        consumer.join(60)
        if consumer.error or consumer.is_alive():
            raise BenchError(f"consumer: {consumer.error or 'did not stop within 60 s'}")


def summary(r: dict) -> str:
    if not r.get("events"):
        return "no events"
    return (f"{r['delivered']}/{r['events']} delivered, p50 {r['p50']:.3f} s, "
            f"p95 {r['p95']:.3f} s, max {r['max']:.3f} s")
