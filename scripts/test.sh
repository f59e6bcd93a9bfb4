#!/usr/bin/env bash
# Runs pgqd's whole test suite: installs what is missing (PostgreSQL server, pgq for
# its major version, Debian's pgqd 3.5 for side-by-side checks), then fmt, clippy and
# cargo test against real throwaway PostgreSQL clusters.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh

ensure_packages
export PATH="$PG_BINDIR:$PATH"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked "$@"
