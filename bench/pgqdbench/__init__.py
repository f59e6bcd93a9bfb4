"""The benchmark and soak behind bench/run.sh (Python 3 standard library only; talks to
PostgreSQL through psql,
and connect_rate and reading_cost through the protocol's messages on the unix socket).

Layout: cli (options, building our pgqd, start to cleanup), cluster (the throwaway
server, its databases, psql), daemons (pgqd.ini, start, stop), procfs (/proc readings),
activity (the daemon as pg_stat_activity and pg_stat_statements show it), metrics (one
object per measured figure), scenarios (scenarios as data, the A B runs), report (tables,
docs/benchmarks.md), soak (--soak), churn (--churn), latency and latency_report
(--latency, docs/benchmarks-latency.md), reading_cost (--reading-cost: the server CPU of
one queue-stats reading, per call), session (a kept psql session), connect_rate
(the server's own limit for a restart), scaling (the restart against that limit, and how
the cost grows with the databases).
"""
