"""The soak (`bench/run.sh --soak MINUTES`): one daemon for some minutes on a throwaway
cluster while, once a minute, a database is created, the one created a minute before is
dropped and the server restarted; the daemon's RSS and open descriptors are sampled every
few seconds, and after each restart the first tick row of every database is awaited."""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import activity
from .cluster import CTL_DB, QUEUE, TPL_DB, BenchError, Cluster, log
from .daemons import Daemon, write_ini
from .procfs import open_fds, vm_rss_mb

SAMPLE_EVERY = 5  # seconds between RSS and descriptor samples
CHURN_EVERY = 60  # seconds between create + drop + restart
POLL_EVERY = 1  # seconds between looks for the first ticks after a restart
# One tick row per ticker call, events or not (pgq's default idle period is a minute), so a
# tick row after a restart shows the daemon's first ticker call since.
IDLE_TICKS_SQL = f"select pgq.set_queue_config('{QUEUE}', 'ticker_idle_period', '1 second');\n"
# Per database: seconds from the restart until its first tick row after it (null: none yet).
FIRST_TICK_SQL = (
    "select current_database(), "
    "extract(epoch from min(tick_time) - '{ts}'::timestamptz) from pgq.tick "
    "where tick_time > '{ts}'::timestamptz;\n"
)


@dataclass
class Restart:
    at_s: float  # since the daemon's start
    server_ts: str  # the server's clock when pg_ctl restart returned
    resumed_s: float | None = None  # until every database had a tick row again
    watched_s: float = 0.0  # how long it was awaited, when it did not happen


@dataclass
class SoakRun:
    who: str
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (s, RSS MB, fds)
    restarts: list[Restart] = field(default_factory=list)
    died: str = ""

    @property
    def ok(self) -> bool:
        return not self.died and all(r.resumed_s is not None for r in self.restarts)


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cluster: Cluster | None = None
        self.churned = 0

    def run(self) -> int:
        a = self.args
        self.cluster = c = Cluster(max(100, 3 * (a.soak_dbs + 2) + 100), a.keep)
        log(f"initdb in {c.dir} (port {c.port})")
        c.init()
        c.psql(TPL_DB, IDLE_TICKS_SQL)
        c.ensure_pgq_dbs(a.soak_dbs)
        daemons = [("ours", a.ours)] + ([("pgqd 3.5", a.reference)] if a.soak_reference else [])
        results = []
        for who, binary in daemons:
            log(f"soak: {who}, {a.soak:g} min, {a.soak_dbs} pgq databases")
            results.append(self.soak_daemon(who, binary))
        text = report(results, a, c)
        print()
        print(text)
        if a.soak_out:
            Path(a.soak_out).write_text(text)
            log(f"wrote {a.soak_out}")
        return 0 if results[0].ok else 1

    def soak_daemon(self, who: str, binary: str) -> SoakRun:
        c, run = self.cluster, SoakRun(who)
        ini = c.dir / f"soak-{who.replace(' ', '')}.ini"
        write_ini(ini, c, {})
        activity.wait_no_clients(c)
        counts = activity.ticker_counts(c)
        d = Daemon(binary, ini, ini.with_suffix(".log"))
        try:
            self.watch(d, run, counts)
        except BenchError as e:
            run.died = str(e)
            log(f"  {who}: {e}")
        finally:
            d.stop()
        return run

    def watch(self, d: Daemon, run: SoakRun, counts: dict[str, int]) -> None:
        """Samples, churns and awaits ticks until the soak's time is up; `counts`: the
        ticker calls per database before the daemon started."""
        c = self.cluster
        start = time.monotonic()
        if activity.wait_first_ticks(c, c.pgq_dbs, d, time.time(), 120, counts) == float("inf"):
            raise BenchError("not every database ticked within 120 s of the start")
        end = start + self.args.soak * 60
        next_sample, next_churn = time.monotonic(), start + CHURN_EVERY
        pending: Restart | None = None
        while True:
            now = time.monotonic()
            d.check_alive()
            if now >= next_sample:
                run.samples.append((now - start, vm_rss_mb(d.pid), open_fds(d.pid)))
                next_sample += SAMPLE_EVERY
            if pending and self.resumed(pending):
                log(f"  ticking resumed {pending.resumed_s:.2f} s after restart "
                    f"{len(run.restarts)}")
                pending = None
            if pending and (now >= end or now >= next_churn):
                pending.watched_s = now - start - pending.at_s
                log(f"  no tick in every database within {pending.watched_s:.0f} s of "
                    f"restart {len(run.restarts)}")
                pending = None
            if now >= end:
                break
            if now >= next_churn:
                pending = self.churn(now - start)
                run.restarts.append(pending)
                next_churn += CHURN_EVERY
            wake = min(next_sample, next_churn, end, now + POLL_EVERY if pending else end)
            time.sleep(max(0.0, wake - time.monotonic()))

    def churn(self, at_s: float) -> Restart:
        """Creates a pgq database, drops the one created last time (with its sessions),
        restarts the server."""
        c = self.cluster
        self.churned += 1
        sql = f"create database soak_{self.churned:03d} template {TPL_DB};\n"
        if self.churned > 1:
            sql += f"drop database soak_{self.churned - 1:03d} with (force);\n"
        c.psql("postgres", sql)
        c.restart()
        ts = c.value(CTL_DB, "select now()")
        dropped = f", soak_{self.churned - 1:03d} dropped" if self.churned > 1 else ""
        log(f"  restart {self.churned} at {at_s / 60:.1f} min (soak_{self.churned:03d} "
            f"created{dropped})")
        return Restart(at_s, ts)

    def resumed(self, r: Restart) -> bool:
        """Whether every database has a tick row since the restart; sets r.resumed_s."""
        c = self.cluster
        script = "".join(f"\\c {db}\n" + FIRST_TICK_SQL.format(ts=r.server_ts)
                         for db in c.pgq_dbs)
        rows = c.psql(CTL_DB, script, timeout=60, check=False)
        delays = [float(row[1]) for row in rows if len(row) > 1 and row[1]]
        if len(delays) < len(c.pgq_dbs):
            return False
        r.resumed_s = max(delays)
        return True


def growth_row(label: str, values: list[float], digits: int) -> str:
    first, last, peak = values[0], values[-1], max(values)
    return (f"| {label} | {first:.{digits}f} | {last:.{digits}f} | {peak:.{digits}f} "
            f"| {last - first:+.{digits}f} |")


def report(runs: list[SoakRun], args: argparse.Namespace, c: Cluster) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# Soak: {args.soak:g} min, {args.soak_dbs} pgq databases", "",
           f"Date: {date}. Once a minute a pgq database is created, the one created a "
           "minute before dropped (`with (force)`) and the server restarted "
           f"(`pg_ctl restart -m fast`); RSS (`VmRSS`) and open descriptors "
           f"(`/proc/PID/fd`) sampled every {SAMPLE_EVERY} s; after each restart, the time "
           "until every pgq database has a tick row again (`pgq.tick`, one row per ticker "
           "call). PostgreSQL: " + c.value(CTL_DB, "show server_version") + ".", ""]
    for run in runs:
        out += [f"## {run.who}", ""]
        if run.died:
            out += [f"**The daemon failed:** {run.died.splitlines()[0]}", ""]
        if run.samples:
            out += [f"{len(run.samples)} samples over {run.samples[-1][0] / 60:.1f} min.", "",
                    "| figure | start | end | max | growth |", "|---|---|---|---|---|",
                    growth_row("RSS, MB", [s[1] for s in run.samples], 1),
                    growth_row("open descriptors", [s[2] for s in run.samples], 0), ""]
        if run.restarts:
            out += ["| restart | at, min | ticking resumed after, s |", "|---|---|---|"]
            for i, r in enumerate(run.restarts, 1):
                resumed = (f"{r.resumed_s:.2f}" if r.resumed_s is not None
                           else f"no tick within {r.watched_s:.0f} s")
                out.append(f"| {i} | {r.at_s / 60:.1f} | {resumed} |")
            out.append("")
    return "\n".join(out)
