"""The report: one table per scenario (median and min-max per daemon, ratio ours/pgqd),
and docs/benchmarks.md with the machine, the command, the method and the tables."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from .cluster import CTL_DB, PLAIN_DBS, TPL_DB, Cluster
from .metrics import FIGURES, METRICS, RUN, START, WINDOW
from .scaling import LIMIT_METHOD, daemon_runs, growth_table, limit_table
from .scenarios import daemons, per_dbs

REPO = Path(__file__).resolve().parent.parent.parent


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def working_tree(*paths: str) -> tuple[str, bool]:
    """The checkout's commit (short), and whether `paths` differ from it (tracked files)."""
    dirty = git("status", "--porcelain", "--untracked-files=no", *paths)
    return git("rev-parse", "--short", "HEAD"), bool(dirty)


def fmt(v: float | None, digits: int, cap: float | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return f">{cap:g}" if cap else "timeout"
    return f"{v:.{digits}f}"


def cell(values: list[float], digits: int, cap: float | None) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med, digits, cap)
    return f"{fmt(med, digits, cap)} [{fmt(min(values), digits, cap)}–{fmt(max(values), digits, cap)}]"


def ratio(ref: list[float], our: list[float]) -> str:
    """Median over median, or "-"."""
    if ref and our:
        mr, mo = statistics.median(ref), statistics.median(our)
        if math.isfinite(mr) and math.isfinite(mo) and mr != 0:
            return f"{mo / mr:.2f}"
    return "-"


def tables(runs: list[dict], args: argparse.Namespace) -> str:
    """One table per scenario, each with its restart against the server's limit."""
    out = []
    for sc in args.scenarios:
        sel = [r for r in daemon_runs(runs) if (r["dbs"], r["ini"]) == (sc.dbs, sc.ini)]
        if not sel:
            continue
        rounds = max(r["round"] for r in sel)
        out.append(f"### {sc.dbs} pgq databases (+{len(PLAIN_DBS) + 1} without pgq), "
                   f"{sc.title}\n")
        order = " ".join("ABC"[: len(daemons(args))])
        out.append(f"{sel[0]['window']:g} s measured window after warm-up, {rounds} round(s) "
                   f"{order}; median [min–max] over the rounds.\n")
        ours = [who for who, _, _ in daemons(args)][1:]
        out.append("| figure | pgqd 3.5 | " + " | ".join(f"{who} | {who}/pgqd" for who in ours)
                   + " |")
        out.append("|---|---|" + "---|---|" * len(ours))
        for f in FIGURES:
            cap = per_dbs(getattr(args, f.cap), sc.dbs) if f.cap else None
            ref = [r[f.key] for r in sel if r["daemon"] == "pgqd 3.5" and f.key in r]
            cols = [[r[f.key] for r in sel if r["daemon"] == who and f.key in r] for who in ours]
            if not ref and not any(cols):
                continue
            cells = "".join(f" {cell(our, f.digits, cap)} | {ratio(ref, our)} |" for our in cols)
            out.append(f"| {f.label} | {cell(ref, f.digits, cap)} |{cells}")
        out.append("")
        limits = limit_table(runs, sc, args)
        if limits:
            out.append(limits)
    growth = growth_table(runs, args)
    return "\n".join(out + ([growth] if growth else []))


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def shown_path(path: str) -> str:
    """A path inside the repository relative to it; others as they are."""
    return os.path.relpath(path, REPO) if path.startswith(str(REPO)) else path


def reference_source(path: str) -> str:
    if path == os.path.abspath(os.environ.get("PGQD_REFERENCE", "")):
        return "Debian's pgqd, unpacked by `bench/run.sh` into a cache, not installed"
    return f"`{shown_path(path)}`"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("?" when it gives none)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def machine(cluster: Cluster, args: argparse.Namespace) -> list[str]:
    cpu = cpu_model()
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    osname = platform.platform()
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return [
        f"- CPU: {os.cpu_count()} x {cpu}",
        f"- memory: {mem}",
        f"- OS: {osname}, kernel {platform.release()}",
        "- load average (1, 5, 15 min) when the benchmark started: "
        + ", ".join(f"{x:.2f}" for x in args.loadavg_start),
        f"- PostgreSQL: {cluster.value(CTL_DB, 'select version()')}",
        f"- pgq: {cluster.value(TPL_DB, 'select pgq.version()')}",
        f"- reference: {reference_source(args.reference)} ({sh([args.reference, '-V'])})",
        f"- ours: `{shown_path(args.ours)}` ({sh([args.ours, '-V'])}; {args.ours_source})",
    ]


METHOD_START = """\
How each figure is measured (the script is `bench/bench.py` with its modules in
`bench/pgqdbench/`; each figure is one object in `metrics.py`):

- One throwaway cluster for the whole benchmark (settings below); the pgq databases are
  clones of `bench_tpl` (pgq + one queue). Every daemon runs in the foreground with the
  same pgqd.ini: `base_connstr`, `syslog = 0` and the scenario's settings (the
  `ticker_period` in each title); everything else at its default (auto-detection through
  template1, check 60 s, retry 30 s, maint 120 s). The daemons alternate pgqd 3.5, ours,
  pgqd 3.5, ours, ... The script's own sessions connect through a second unix socket
  directory of the server (a listen queue of their own, so that they never wait behind
  the thousands of connections a daemon opens at its start or after a restart)."""
METHOD_END = "- Then SIGINT; the next daemon starts only after every client backend has gone.\n"


def method(args: argparse.Namespace) -> str:
    """The method section, from each metric's own paragraph."""
    def bullets(when: str, indent: str) -> list[str]:
        lines = [[line.strip() for line in m.method.splitlines()]
                 for m in METRICS if m.when == when and m.method]
        return [indent + "- " + ("\n" + indent + "  ").join(text) for text in lines]
    variant = []
    if args.variant:
        who = daemons(args)[2][0]
        variant = [f"- A third daemon, *{who}*, is our pgqd with those settings added to the "
                   "same pgqd.ini; it runs after ours in every round."]
    return "\n".join([
        METHOD_START,
        *variant,
        *bullets(START, ""),
        "- Then a warm-up, then the measured window. Over the window:",
        *bullets(WINDOW, "  "),
        *bullets(RUN, ""),
        METHOD_END + LIMIT_METHOD + "\n",
    ])


def kept_notes(path: Path) -> str:
    """The `## Notes` section of an existing report (written by hand), to the end."""
    text = path.read_text() if path.exists() else ""
    i = text.find("\n## Notes")
    return text[i + 1 :] if i >= 0 else ""


def write_markdown(path: Path, runs: list[dict], args: argparse.Namespace, cluster: Cluster,
                   started: datetime.datetime, elapsed: float) -> None:
    """Rewrites `path` above its `## Notes` section, which is kept."""
    notes = kept_notes(path)
    counts = sorted({s.dbs for s in args.scenarios})
    windows = ", ".join(f"{n} dbs: {per_dbs(args.window, n):g} s" for n in counts)
    warmups = ", ".join(f"{n} dbs: {per_dbs(args.warmup, n):g} s" for n in counts)
    parts = [
        "# Benchmark: pgqd 3.5 and this pgqd, side by side",
        "",
        "Generated by `bench/run.sh`; the numbers below are what that run measured.",
        "Regenerate with the command below (it rewrites everything above `## Notes`).",
        "",
        "```sh",
        os.environ.get("BENCH_COMMAND", "bench/run.sh " + " ".join(sys.argv[1:])),
        "```",
        "",
        f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; the run took {elapsed / 60:.1f} min.",
        "",
        "## Machine",
        "",
        *machine(cluster, args),
        "",
        "## Method",
        "",
        f"Measured windows: {windows}; warm-ups after every database has ticked: {warmups} "
        "(at 1000 databases the first maintenance rounds and pgqd 3.5's first per-round "
        "connections run for some seconds after the last database has ticked, and the "
        f"window is meant to be steady state); {args.rounds} round(s) per scenario; "
        f"connections sampled every {args.sample_every:g} s.",
        "",
        method(args),
        "Cluster settings (appended to postgresql.conf after initdb):",
        "",
        "```",
        *[s for s in cluster.settings if not s.startswith(("port", "unix_socket"))],
        "```",
        "",
        "## Results",
        "",
        tables(runs, args),
    ]
    text = "\n".join(parts).rstrip() + "\n"
    if notes:
        text += "\n" + notes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
