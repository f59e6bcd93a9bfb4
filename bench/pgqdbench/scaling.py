"""The report's figures across scenarios: each daemon's restart against the server's own
limit (connect_rate), and how the cost grows with the number of databases."""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass

from .connect_rate import IN_FLIGHT
from .scenarios import Scenario, daemons

LIMIT_METHOD = f"""\
- *the server's own limit* (in the scenarios with the restart, after all their runs, no
  daemon running): `connect_rate.py` opens one session to each pgq database over the
  unix socket (protocol start-up messages from one asyncio loop, trust authentication,
  the sessions held until all are open) right after a `pg_ctl restart -m fast`, clocked
  from the moment `pg_ctl` returns, as the restart figure is; once with sessions only,
  once with one `select pgq.ticker()` in each; each with {', '.join(map(str, IN_FLIGHT))}
  sessions opening at once, after its own restart, and the fastest counts. Each
  daemon's restart is shown as a ratio to both."""
LINEAR = 0.2  # per-database values within +-20 % of each other: linear growth


def daemon_runs(runs: list[dict]) -> list[dict]:
    """The runs of daemons (without the server's limit records)."""
    return [r for r in runs if "daemon" in r]


def limit_of(runs: list[dict], sc: Scenario) -> dict | None:
    return next((r["limit"] for r in runs
                 if "limit" in r and (r["dbs"], r["ini"]) == (sc.dbs, sc.ini)), None)


def median_of(runs: list[dict], key: str, dbs: int, ini: dict, who: str) -> float | None:
    values = [r[key] for r in daemon_runs(runs)
              if (r["dbs"], r["ini"], r["daemon"]) == (dbs, ini, who) and key in r]
    return statistics.median(values) if values else None


def times(value: float | None, limit: float) -> str:
    if value is None:
        return "-"
    return f"{value / limit:.2f}x" if math.isfinite(value) else "timeout"


def limit_table(runs: list[dict], sc: Scenario, args: argparse.Namespace) -> str:
    """The scenario's restart against the server's limits; "" when not measured."""
    limit = limit_of(runs, sc)
    if not limit:
        return ""
    names = [who for who, _, _ in daemons(args)]
    restarts = [median_of(runs, "restart", sc.dbs, sc.ini, who) for who in names]
    out = [
        "Restart against the server's own limit (`connect_rate.py`, no daemon running): one "
        f"session to each of the {sc.dbs} databases opened as fast as the server accepts "
        f"them, the fastest of {', '.join(map(str, IN_FLIGHT))} opening at once, each after "
        "a fresh `pg_ctl restart`; restart / limit of each daemon (the goal: ours at most "
        "1.1x the sessions-only limit; the limit with a ticker call is the floor for any "
        "ticker).",
        "",
        "| server's limit | s | " + " | ".join(f"{who}: restart / limit" for who in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for key, label in (("sessions", "sessions only"),
                       ("tick", "sessions + one `pgq.ticker()` each")):
        m = limit[key]
        cells = " | ".join(times(r, m["secs"]) for r in restarts)
        out.append(f"| {label} ({m['in_flight']} at once) | {m['secs']:.2f} | {cells} |")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class PerDb:
    """One row group of the growth table: a figure per database."""

    key: str
    label: str
    scale: float  # from the run's unit to the per-database unit, times the database count
    digits: int


GROWTH = [
    PerDb("cpu", "daemon CPU, ms/min per db", 1000, 2),
    PerDb("rss", "daemon peak RSS, kB per db", 1024, 1),
    PerDb("backend_anon", "client backends' private memory, kB per db", 1024, 0),
    PerDb("first_all", "start until all dbs ticked, ms per db", 1000, 2),
    PerDb("restart", "restart until all dbs tick, ms per db", 1000, 2),
]


def growth_word(per: list[float], counts: list[int], digits: int) -> str:
    """Linear, or which way it deviates, from the per-database values at the fewest and
    the most databases; with the cost of each database added between them."""
    (first, n0), (last, n1) = (per[0], counts[0]), (per[-1], counts[-1])
    if not (math.isfinite(first) and math.isfinite(last)):
        return "not measured at both ends"
    added = (last * n1 - first * n0) / (n1 - n0)
    each = f"each database added from {n0} to {n1}: {added:.{digits}f}"
    if first <= 0:
        return f"no ratio (0 at {n0}); {each}"
    r = last / first
    way = ("linear" if abs(r - 1) <= LINEAR
           else "faster than linear" if r > 1 else "slower than linear")
    return f"{way} ({r:.2f}x per db at {n1} as at {n0}; {each})"


def growth_table(runs: list[dict], args: argparse.Namespace) -> str:
    """"How the cost grows": the ticker_period 1 scenarios with the default settings,
    per database, per daemon; "" with fewer than two such scenarios."""
    scs = [sc for sc in args.scenarios if not sc.ini and any(
        r["dbs"] == sc.dbs and r["ini"] == sc.ini for r in daemon_runs(runs))]
    if len(scs) < 2:
        return ""
    counts = [sc.dbs for sc in scs]
    names = [who for who, _, _ in daemons(args)]
    out = [
        "## How the cost grows",
        "",
        "Per database, at ticker_period = 1 (medians over the rounds, divided by the "
        "number of pgq databases). Below the table, each figure's per-database value at "
        "the most databases is compared with the one at the fewest: within "
        f"+-{LINEAR:.0%} is linear; *slower than linear* means a fixed part spread over "
        "more databases, *faster* a cost per database that rises with their number; "
        "*each database added* is the growth of the total between the two, per database "
        "(the same unit).",
        "",
        "| figure | who | " + " | ".join(f"{n} dbs" for n in counts) + " |",
        "|---|---|" + "---|" * len(counts),
    ]
    sentences = []
    for g in GROWTH:
        words = []
        for who in names:
            vals = [median_of(runs, g.key, n, {}, who) for n in counts]
            if all(v is None for v in vals):
                continue
            per = [math.nan if v is None else v * g.scale / n for v, n in zip(vals, counts)]
            out.append(f"| {g.label} | {who} | {cells(per, g.digits)} |")
            words.append(f"{who}: {growth_word(per, counts, g.digits)}")
        if words:
            sentences.append(f"- {g.label.split(',')[0]}: " + "; ".join(words) + ".")
    for key, label in (("sessions", "server's limit, sessions only, ms per db"),
                       ("tick", "server's limit, sessions + tick, ms per db")):
        limits = [limit_of(runs, sc) for sc in scs]
        per = [lim[key]["secs"] * 1000 / n if lim else math.nan
               for lim, n in zip(limits, counts)]
        if all(math.isnan(p) for p in per):
            continue
        out.append(f"| {label} | server | {cells(per, 2)} |")
        sentences.append(f"- {label.rsplit(',', 1)[0]}: "
                         f"{growth_word(per, counts, 2)}.")
    return "\n".join(out + [""] + sentences) + "\n"


def cells(per: list[float], digits: int) -> str:
    return " | ".join("-" if math.isnan(p) else "timeout" if math.isinf(p)
                      else f"{p:.{digits}f}" for p in per)
