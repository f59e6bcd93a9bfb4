#!/usr/bin/env bash
# Runs pgqd's whole test suite: installs what is missing (PostgreSQL server, pgq for
# its major version with our own .deb as the pgqd it depends on, Patroni and etcd, no
# service of theirs left enabled or running; the copy of Debian's pgqd 3.5 that the
# tests compare against is unpacked into a cache), then fmt, clippy and cargo test over the
# workspace (pgqd and crates/pgconninfo) against real throwaway PostgreSQL clusters, a
# real Prometheus and Patroni; then the Debian package and the container image with
# podman (scripts/container-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh

ensure_packages
ensure_test_packages
# In a subshell: the tests find it in the cache, and PGQD_REFERENCE must not reach them
# (every daemon they start would read a PGQD_* variable as a setting).
(ensure_reference)
export PATH="$PG_BINDIR:$PATH"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --workspace --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --locked "$@"
echo "== package and container tests"
scripts/container-test.sh
echo "== release: the static x86_64 binary and the minimal image tick (scripts/release.sh --ci)"
scripts/release.sh --ci
