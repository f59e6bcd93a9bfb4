"""The latency report: the tables of `bench/run.sh --latency` and
docs/benchmarks-latency.md (machine, command, method, tables; its `## Notes` kept)."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
from pathlib import Path

from .latency import (CONSUMER, DRAIN_TIMEOUT, PGQ_DEFAULTS, POLL_EVERY, RATE, Latency)
from .report import kept_notes, machine
from .scenarios import daemons

STEADY_FIGURES = (("p50", "p50"), ("p95", "p95"), ("max", "max"))


def secs(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "not delivered" if math.isinf(v) else f"{v:.3f}"


def find(results: list[dict], who: str, period: float, queue: str, restart: bool) -> dict:
    for r in results:
        if (r["daemon"], r["ticker_period"], r["queue"], r["restart"]) == (
                who, period, queue, restart):
            return r
    return {}


def delivered(r: dict) -> str:
    return f"{r.get('delivered', 0)} of {r.get('events', 0)}"


def steady_table(results: list[dict], names: list[str]) -> list[str]:
    head = "".join(f" {who} {label}, s |" for who in names for _, label in STEADY_FIGURES)
    out = ["| ticker_period | queue settings |" + head
           + f" events delivered ({' / '.join(names)}) |",
           "|---|---|" + "---|" * (3 * len(names)) + "---|"]
    rows = dict.fromkeys((r["ticker_period"], r["queue"]) for r in results if not r["restart"])
    for period, queue in rows:
        found = [find(results, who, period, queue, False) for who in names]
        cells = "".join(f" {secs(r.get(key))} |" for r in found for key, _ in STEADY_FIGURES)
        out.append(f"| {period:g} | {queue} |{cells} {' / '.join(map(delivered, found))} |")
    return out


def restart_table(restarts: list[dict]) -> list[str]:
    """A row per restart measurement, by queue setting, then daemon."""
    out = ["| queue settings | daemon | server up until the first event committed, s | "
           "first event: commit until delivered, s | p50, s | p95, s | max, s | "
           "events delivered |", "|---|---|---|---|---|---|---|---|"]
    queues = list(dict.fromkeys(r["queue"] for r in restarts))
    for r in sorted(restarts, key=lambda r: queues.index(r["queue"])):  # stable: daemon order
        cells = " | ".join(secs(r.get(k)) for k in
                           ("first_commit", "first_delay", "p50", "p95", "max"))
        out.append(f"| {r['queue']} | {r['daemon']} | {cells} | {delivered(r)} |")
    return out


def tables(results: list[dict], args: argparse.Namespace) -> str:
    names = [who for who, _, _ in daemons(args)]
    out = ["### Steady flow", "", *steady_table(results, names), ""]
    restarts = [r for r in results if r["restart"]]
    if restarts:
        out += [f"### Across `pg_ctl restart -m fast` (ticker_period "
                f"{restarts[0]['ticker_period']:g})", "", *restart_table(restarts), ""]
    return "\n".join(out)


def method(job: Latency) -> str:
    periods = " and ".join(job.periods)
    return f"""\
The run is `bench/run.sh --latency`: `bench/pgqdbench/latency.py` measures, and
`latency_report.py` writes this page. One throwaway cluster (the settings of
[benchmarks.md](benchmarks.md)) with one pgq database, a clone of `bench_tpl` (pgq and
one queue), and the few databases without pgq. Each daemon runs alone, in turn (pgqd
3.5, then ours; the next starts once every session of the previous has gone), at each
ticker_period ({periods}), with a pgqd.ini of `base_connstr`, `syslog = 0` and that
`ticker_period`. Once it has ticked, it is measured with each queue setting in turn:

- *{PGQ_DEFAULTS.label}*: `ticker_max_count` 500, `ticker_max_lag` 3 s,
  `ticker_idle_period` 1 min. When there are new events, `pgq.ticker()` makes a tick
  only once 500 have gathered or the last tick is at least `ticker_max_lag` old, so at
  {RATE} events/s a batch closes about every 3 s, at the first ticker call after that;
- *ticker_max_lag = 0* (`pgq.set_queue_config(queue, 'ticker_max_lag', '0')`): every
  ticker call that finds new events makes a tick, so the delay is the daemon's own.

Each measurement registers the consumer `{CONSUMER}` afresh (at the latest tick). A
consumer thread, on a kept psql session, calls `pgq.next_batch`; when it returns a
batch, `pgq.get_batch_events` and `pgq.finish_batch`; when not, it sleeps
{POLL_EVERY * 1000:g} ms. A producer thread, on another kept session, commits one
`pgq.insert_event` every {1000 / RATE:g} ms ({RATE}/s) in autocommit. An event's latency
runs from the moment its `insert_event` returned to the producer (the server commits
before it answers) until `get_batch_events` returned it to the consumer, both on this
script's monotonic clock. The events of the first {job.warmup:g} s are not counted,
those of the next {job.window:g} s are; then the producer stops and the consumer has
up to {DRAIN_TIMEOUT} s more to receive them (an event still missing then shows as *not
delivered*). p50 and p95 are nearest-rank percentiles over the counted events.

Across a restart (ticker_period {job.periods[0]}, each queue setting): with the daemon
running, `pg_ctl restart -m fast`; from the moment it returns (the server accepts
connections), a new consumer session and a new producer session start, and the
producer commits events for {job.restart_events:g} s; each event's latency is measured
as above, until {job.restart_timeout:g} s after the restart. pgqd 3.5 waits 60 s before it
reconnects a broken connection, so its first tick after a restart comes a minute later.
"""


def write_page(path: Path, results: list[dict], job: Latency, started: datetime.datetime,
               elapsed: float) -> None:
    """Rewrites `path` above its `## Notes` section, which is kept."""
    a, c = job.args, job.cluster
    notes = kept_notes(path)
    parts = [
        "# Benchmark: delivery latency, pgqd 3.5 and this pgqd",
        "",
        "Generated by `bench/run.sh --latency`; the numbers below are what that run",
        "measured. Regenerate with the command below (it rewrites everything above",
        "`## Notes`). The other figures (CPU, memory, sessions) are in",
        "[benchmarks.md](benchmarks.md).",
        "",
        "```sh",
        os.environ.get("BENCH_COMMAND", "bench/run.sh " + " ".join(sys.argv[1:])),
        "```",
        "",
        f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; the run took {elapsed / 60:.1f} min.",
        "",
        "## Machine",
        "",
        *machine(c, a),
        "- load average (1, 5, 15 min) when it ended: "
        + ", ".join(f"{x:.2f}" for x in a.loadavg_end),
        "",
        "## Method",
        "",
        method(job),
        "## Results",
        "",
        tables(results, a),
    ]
    text = "\n".join(parts).rstrip() + "\n"
    if notes:
        text += "\n" + notes
    path.write_text(text)
