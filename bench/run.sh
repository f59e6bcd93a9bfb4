#!/usr/bin/env bash
# Side-by-side benchmark of Debian's pgqd 3.5 and this pgqd on one throwaway cluster.
# Usage: bench/run.sh [--quick] [--dbs 100,1000] [--periods 1,0.1] [--rounds 3] ...
# (bench/run.sh --help lists every option; docs/benchmarks.md has the method and results.)
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec python3 bench/bench.py "$@"
