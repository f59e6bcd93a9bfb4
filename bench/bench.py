#!/usr/bin/env python3
"""Side-by-side benchmark of the reference pgqd 3.5 and this pgqd; run it through
bench/run.sh (see --help). What it does:

1. initdb a throwaway cluster in a temp dir (own port, unix socket in that dir, no TCP,
   fsync off, track_functions = all, max_connections sized for pgqd 3.5's three
   connections per database), create `bench_tpl` with pgq and one queue, clone the
   pgq databases from it, and add a few databases without pgq;
2. for every scenario (number of databases, pgqd.ini settings) and every round, run the
   reference daemon and ours in turn (A B A B ...) with the same pgqd.ini;
3. measure each run (pgqdbench/metrics.py: one object per figure, and
   docs/benchmarks.md for how); after a scenario's runs with the restart, measure the
   server's own limit for it (pgqdbench/connect_rate.py);
4. print one table per scenario (median and min-max per daemon, ratio ours/pgqd, the
   restart against the server's limit) and how the cost grows per database
   (pgqdbench/scaling.py), and write them, with the machine, command and date, to
   docs/benchmarks.md.

With --soak MINUTES it runs the soak instead (pgqdbench/soak.py); with --latency, the
delivery latency from commit to consumer (pgqdbench/latency.py, docs/benchmarks-latency.md);
with --reading-cost, no daemon but the server CPU of one reading of the queue figures,
measured per call (pgqdbench/reading_cost.py). Every cluster and daemon started here is
stopped on exit, also on Ctrl-C.
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from pgqdbench.cli import main  # noqa: E402  (after the line above)
from pgqdbench.cluster import BenchError  # noqa: E402

if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
