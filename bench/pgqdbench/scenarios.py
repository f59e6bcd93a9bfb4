"""Scenarios and the runs: a scenario is data (how many pgq databases, the pgqd.ini
settings it changes, an optional set-up step); every scenario runs each daemon in turn
(A B A B ...) for some rounds on one cluster."""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from . import activity, connect_rate
from .cluster import Cluster, log
from .daemons import Daemon, write_ini
from .metrics import FIGURES, Window, after_run, measure_window

DEFAULT_SCENARIOS = "50x0.1,100x1,100x0.1,1000x1"
# Shown in every scenario's title, also when the scenario leaves it at this default.
SHOWN_DEFAULTS = {"ticker_period": "1"}


@dataclass
class Scenario:
    dbs: int  # pgq databases the daemons see (plus the few without pgq)
    ini: dict[str, str] = field(default_factory=dict)  # pgqd.ini settings besides the base ones
    # Runs once before the scenario's rounds, with the cluster and its first `dbs`
    # pgq databases.
    setup: Callable[[Cluster, list[str]], None] | None = None

    @property
    def settings(self) -> dict[str, str]:
        return {**SHOWN_DEFAULTS, **self.ini}

    @property
    def title(self) -> str:
        return ", ".join(f"{k} = {v}" for k, v in self.settings.items())

    @property
    def ticker_period(self) -> float:
        return float(self.settings["ticker_period"])


def scenario_list(text: str) -> list[Scenario]:
    """"100x1,100x0.1,1000x1" -> 100 dbs at the default ticker_period, 100 at 0.1, 1000 at
    the default."""
    out = []
    for item in text.split(","):
        n, _, period = item.strip().partition("x")
        try:
            value = float(period)
        except ValueError:
            value = None
        if not n.isdigit() or value is None:
            raise argparse.ArgumentTypeError(f"{item!r} is not DBSxPERIOD (e.g. 100x0.1)")
        out.append(Scenario(int(n), {} if value == 1 else {"ticker_period": f"{value:g}"}))
    if [s.dbs for s in out] != sorted(s.dbs for s in out):
        raise argparse.ArgumentTypeError("list the scenarios by ascending number of databases")
    return out


def ini_settings(text: str) -> dict[str, str]:
    """"http_listen=127.0.0.1:9651,leader_lock=0" -> {"http_listen": "127.0.0.1:9651", "leader_lock": "0"}"""
    out = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def variant_name(settings: dict[str, str]) -> str:
    """The name of our pgqd run with extra settings: "ours, leader_lock = 0"."""
    return "ours, " + ", ".join(f"{k} = {v}" for k, v in settings.items())


def daemons(args: argparse.Namespace) -> list[tuple[str, str, dict[str, str]]]:
    """Who runs in each round, in order: name, binary, pgqd.ini settings of its own."""
    out = [("pgqd 3.5", args.reference, {}), ("ours", args.ours, {})]
    if args.variant:
        out.append((variant_name(args.variant), args.ours, args.variant))
    return out


def per_dbs_list(text: str) -> dict[int, float]:
    """"100=60,1000=30" -> {100: 60.0, 1000: 30.0}; a bare "45" -> {0: 45.0}"""
    out = {}
    for item in text.split(","):
        n, eq, secs = item.strip().rpartition("=")
        out[int(n) if eq else 0] = float(secs)
    return out


def per_dbs(values: dict[int, float], n: int) -> float:
    """The value of the largest listed database count <= n (else the smallest listed)."""
    keys = sorted(values)
    fitting = [k for k in keys if k <= n]
    return values[fitting[-1] if fitting else keys[0]]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cluster: Cluster | None = None
        self.run_no = 0

    def setup_cluster(self) -> None:
        max_n = max(s.dbs for s in self.args.scenarios)
        # pgqd 3.5 may hold ticker, retry and maint connections for every database at
        # once; plus discovery, non-pgq probes, this script and some slack.
        max_conn = max(100, 3 * max_n + 100)
        self.cluster = c = Cluster(max_conn, self.args.keep)
        log(f"initdb in {c.dir} (port {c.port}, max_connections {max_conn})")
        c.init()

    def run(self) -> list[dict]:
        """Every scenario, every round, each daemon in turn; one dict of figures per run."""
        a = self.args
        runs: list[dict] = []
        self.setup_cluster()
        c = self.cluster
        for sc in a.scenarios:
            c.ensure_pgq_dbs(sc.dbs)
            if sc.setup:
                sc.setup(c, c.pgq_dbs[: sc.dbs])
            restart = a.restart == "all" or (a.restart == "default" and sc.ticker_period == 1)
            for rnd in range(1, a.rounds + 1):
                for who, binary, own in daemons(a):
                    log(f"{sc.dbs} dbs, {sc.title}, round {rnd}/{a.rounds}: {who}")
                    r = self.run_daemon(who, binary, sc, own, restart)
                    r["round"] = rnd
                    runs.append(r)
                    log("  " + ", ".join(f"{f.key} {r[f.key]:.3g}" for f in FIGURES if f.key in r))
            if restart:
                runs.append(self.server_limits(sc))
        return runs

    def server_limits(self, sc: Scenario) -> dict:
        """The server's own limit for the restart figure (connect_rate), with no daemon
        running: a record of its own in the runs, told apart by "limit"."""
        c = self.cluster
        log(f"{sc.dbs} dbs, {sc.title}: the server's own limit for a restart")
        activity.wait_no_clients(c)
        limits = connect_rate.server_limits(c, c.pgq_dbs[: sc.dbs])
        return {"limit": limits, "dbs": sc.dbs, "ini": sc.ini}

    def run_daemon(self, who: str, binary: str, sc: Scenario, own: dict[str, str],
                   restart: bool) -> dict:
        """One run: start, first ticks, warm-up, measured window, restart, stop. `own`:
        pgqd.ini settings of this daemon's, on top of the scenario's."""
        a, c = self.args, self.cluster
        self.run_no += 1
        tag = re.sub(r"[^\w.]+", "-", f"{self.run_no:02d}-{who}-{sc.dbs}-{sc.ticker_period:g}")
        ini = c.dir / f"{tag}.ini"
        write_ini(ini, c, {**sc.ini, **own})
        activity.wait_no_clients(c)
        window = per_dbs(a.window, sc.dbs)
        dbs = c.pgq_dbs[: sc.dbs]
        res: dict = {"daemon": who, "dbs": sc.dbs, "ticker_period": sc.ticker_period,
                     "ini": sc.ini, "window": window}

        counts = activity.ticker_counts(c)
        t_start = time.time()
        d = Daemon(binary, ini, c.dir / f"{tag}.log")
        try:
            res["first_all"] = activity.wait_first_ticks(
                c, dbs, d, t_start, per_dbs(a.start_timeout, sc.dbs), counts)
            time.sleep(per_dbs(a.warmup, sc.dbs))
            d.check_alive()
            listen = {**sc.ini, **own}.get("http_listen")
            w = Window(c, d, dbs, c.postmaster_pid(),
                       metrics_url=f"http://{listen}/metrics" if listen else None)
            res.update(measure_window(w, window, a.sample_every))
            if restart:
                c.restart()
                t_up = time.time()
                # Read once the server is up: counts before the restart would include
                # the calls made while it shut down.
                counts = activity.ticker_counts(c)
                res["restart"] = max(0.0, activity.wait_first_ticks(
                    c, dbs, d, t_up, per_dbs(a.restart_timeout, sc.dbs), counts))
            res.update(after_run(d))
        finally:
            d.stop()
        res["log_tail"] = d.log_tail(5)
        return res
