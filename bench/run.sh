#!/usr/bin/env bash
# Side-by-side benchmark of Debian's pgqd 3.5 and this pgqd on one throwaway cluster.
# Usage: bench/run.sh [--quick] [--scenarios 100x1,1000x1] [--rounds 3] [--latency] ...
#        bench/run.sh --reading-cost [--reading-dbs 100] [--reading-period 60] [--out FILE]
# (bench/run.sh --help lists every option; docs/benchmarks.md has the method and results.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh

# Installs what is missing (PostgreSQL, pgq, python3), as scripts/test.sh does, and
# unpacks pgqd 3.5 into a cache without installing it (sets PGQD_REFERENCE).
ensure_packages >&2
ensure_reference >&2
export PATH="$PG_BINDIR:$PATH"
export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec python3 bench/bench.py "$@"
