"""The churn (`bench/run.sh --churn N`): a daemon on a throwaway cluster while N pgq
databases are created and dropped, in batches, each batch served (a session of the
daemon in every database of it) before it is dropped `with (force)`. The daemon's RSS
is sampled after a warm-up churn and after every batch; the report gives the growth per
1000 databases that came and went, which should be zero within noise: a daemon that
keeps anything of a database that is gone grows with every one."""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import activity
from .cluster import CTL_DB, TPL_DB, BenchError, Cluster, log
from .daemons import Daemon, write_ini
from .procfs import vm_rss_mb

BATCH = 25  # databases created, served and dropped together
WARMUP = 100  # databases churned before the baseline sample (allocator pools filled)
SETTLE = 3  # seconds after a batch's drop before the sample (tasks ended)
SERVED_TIMEOUT = 120  # seconds for every database of a batch to get a daemon session
SERVED_SQL = (
    "select count(distinct datname) from pg_stat_activity "
    f"where {activity.DAEMON_BACKENDS} and datname like 'churn\\_%'"
)


@dataclass
class ChurnRun:
    who: str
    # (databases churned after the warm-up, RSS MB)
    samples: list[tuple[int, float]] = field(default_factory=list)
    died: str = ""

    def per_thousand(self) -> float:
        """The least-squares slope of RSS over databases churned, per 1000."""
        xs, ys = [s[0] for s in self.samples], [s[1] for s in self.samples]
        n = len(xs)
        if n < 2:
            return float("nan")
        mx, my = sum(xs) / n, sum(ys) / n
        var = sum((x - mx) ** 2 for x in xs)
        return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


class Churn:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cluster: Cluster | None = None
        self.next_db = 0

    def run(self) -> int:
        a = self.args
        self.cluster = c = Cluster(max(100, 2 * (a.soak_dbs + BATCH) + 50), a.keep)
        log(f"initdb in {c.dir} (port {c.port})")
        c.init()
        c.ensure_pgq_dbs(a.soak_dbs)
        daemons = [("ours", a.ours)] + ([("pgqd 3.5", a.reference)] if a.soak_reference else [])
        runs = []
        for who, binary in daemons:
            log(f"churn: {who}, {WARMUP} + {a.churn} databases in batches of {BATCH}, "
                f"{a.soak_dbs} steady pgq databases")
            runs.append(self.churn_daemon(who, binary))
        text = report(runs, a, c)
        print()
        print(text)
        if a.soak_out:
            Path(a.soak_out).write_text(text)
            log(f"wrote {a.soak_out}")
        return 0 if not runs[0].died else 1

    def churn_daemon(self, who: str, binary: str) -> ChurnRun:
        c, run = self.cluster, ChurnRun(who)
        ini = c.dir / f"churn-{who.replace(' ', '')}.ini"
        # Databases are found at the next listing: a short check_period keeps it brisk
        # for pgqd 3.5 too.
        write_ini(ini, c, {"check_period": "1"})
        activity.wait_no_clients(c)
        counts = activity.ticker_counts(c)
        d = Daemon(binary, ini, ini.with_suffix(".log"))
        try:
            if activity.wait_first_ticks(c, c.pgq_dbs, d, time.time(), 120, counts) == float("inf"):
                raise BenchError("not every database ticked within 120 s of the start")
            self.batches(d, WARMUP)
            run.samples.append((0, vm_rss_mb(d.pid)))
            done = 0
            while done < self.args.churn:
                done += self.batches(d, BATCH)
                run.samples.append((done, vm_rss_mb(d.pid)))
                log(f"  {who}: {done} churned, RSS {run.samples[-1][1]:.1f} MB")
        except BenchError as e:
            run.died = str(e)
            log(f"  {who}: {e}")
        finally:
            d.stop()
        return run

    def batches(self, d: Daemon, n: int) -> int:
        """Churns `n` databases in batches; returns n."""
        left = n
        while left > 0:
            size = min(BATCH, left)
            self.batch(d, size)
            left -= size
        return n

    def batch(self, d: Daemon, size: int) -> None:
        c = self.cluster
        names = [f"churn_{self.next_db + i:05d}" for i in range(size)]
        self.next_db += size
        c.psql("postgres", "".join(f"create database {n} template {TPL_DB};\n" for n in names))
        deadline = time.monotonic() + SERVED_TIMEOUT
        while int(c.value(CTL_DB, SERVED_SQL)) < size:
            d.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"a batch was not served within {SERVED_TIMEOUT} s")
            time.sleep(0.2)
        c.psql("postgres", "".join(f"drop database {n} with (force);\n" for n in names))
        time.sleep(SETTLE)
        d.check_alive()


def report(runs: list[ChurnRun], args: argparse.Namespace, c: Cluster) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# Churn: {args.churn} databases created and dropped", "",
           f"Date: {date}. {args.soak_dbs} pgq databases tick throughout; pgq databases "
           f"are created (clones of {TPL_DB}) in batches of {BATCH}, each batch served "
           "(a daemon session in each) and then dropped `with (force)`, with "
           f"check_period = 1. After a warm-up of {WARMUP} databases, RSS (`VmRSS`) is "
           f"sampled {SETTLE} s after every batch's drop; the growth per 1000 is the "
           "least-squares slope of RSS over the databases churned. PostgreSQL: "
           + c.value(CTL_DB, "show server_version") + ".", "",
           "| daemon | databases churned | RSS after warm-up, MB | RSS at end, MB | "
           "max, MB | growth per 1000 databases, MB |", "|---|---|---|---|---|---|"]
    for run in runs:
        if run.died:
            out.append(f"| {run.who} | failed: {run.died.splitlines()[0]} | | | | |")
            continue
        rss = [s[1] for s in run.samples]
        out.append(f"| {run.who} | {run.samples[-1][0]} | {rss[0]:.1f} | {rss[-1]:.1f} | "
                   f"{max(rss):.1f} | {run.per_thousand():+.2f} |")
    return "\n".join(out) + "\n"
