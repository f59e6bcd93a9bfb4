# shellcheck shell=bash
# scripts/release.sh's throwaway PostgreSQL cluster: data, socket and TLS key in a temp
# dir, its own port, run as `postgres`; database `rtest` with pgq and queue `q`. And the
# one test every artifact's binary takes: does it tick that queue?
# Needs PG_BINDIR (scripts/lib/packages.sh) and fail (scripts/release.sh).

DEADLINE=180 # seconds a wait may take (qemu-user is slow): generous, no timing claim

# Polls "$@" every half second until it succeeds, or fails after DEADLINE.
wait_for() {
    local what=$1 until=$((SECONDS + DEADLINE))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$until" ] || fail "timed out after ${DEADLINE}s waiting for $what"
        sleep 0.5
    done
}

# Not through a function when started in the background: $! would be a subshell's pid,
# and a signal sent to it would not reach the daemon.
AS_PG=(--reuid postgres --regid postgres --init-groups --)
as_pg() { setpriv "${AS_PG[@]}" "$@"; }
psql_rel() {
    local db=$1
    shift
    as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d "$db" "$@"
}

# With ssl = on (a self-signed key), so the daemons connect with sslmode=require and the
# static binary's TLS (rustls with ring's C and assembly, per architecture) is exercised.
start_release_cluster() {
    step "starting a throwaway PostgreSQL $PG_MAJOR cluster"
    TMP=$(mktemp -d /tmp/pgqd-release.XXXXXX)
    SOCK=$TMP/socket
    PORT=$((30000 + $$ % 10000))
    mkdir -p "$SOCK" "$TMP/data"
    chmod 755 "$TMP" "$SOCK"
    chown postgres: "$SOCK" "$TMP/data"
    as_pg "$PG_BINDIR/initdb" -A trust -U postgres --no-sync -D "$TMP/data" >/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -keyout "$TMP/data/server.key" -out "$TMP/data/server.crt" 2>/dev/null
    chown postgres: "$TMP/data/server.key" "$TMP/data/server.crt"
    chmod 600 "$TMP/data/server.key"
    as_pg "$PG_BINDIR/pg_ctl" -D "$TMP/data" -l "$TMP/data/server.log" -w \
        -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c ssl=on -c fsync=off" start >/dev/null
    psql_rel postgres -c "create database rtest"
    psql_rel rtest -c "create extension pgq" -c "select pgq.create_queue('q')" >/dev/null
}

# Also ends a daemon a failed check left running (DAEMON_PID).
stop_release_cluster() {
    if [ -n "${DAEMON_PID:-}" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
        DAEMON_PID=
    fi
    [ -n "${TMP:-}" ] || return 0
    as_pg "$PG_BINDIR/pg_ctl" -D "$TMP/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
    TMP=
}

assert_ticks() { assert_ticks_via psql_rel rtest "$1"; }

# Runs "$@ CONFIG" as postgres against the cluster over TCP with TLS (sslmode=require),
# asserts that it ticks, then stops it with SIGINT (the graceful stop) and asserts exit 0.
assert_binary_ticks() {
    local label=$1 ini="$TMP/release.ini" log="$TMP/daemon.log" status=0
    shift
    cat >"$ini" <<EOF
[pgqd]
base_connstr = host=127.0.0.1 port=$PORT user=postgres sslmode=require
database_list = rtest
ticker_period = 0.5
syslog = 0
EOF
    chmod 644 "$ini"
    setpriv "${AS_PG[@]}" "$@" "$ini" >"$log" 2>&1 &
    local pid=$!
    DAEMON_PID=$pid
    assert_ticks "$label"
    kill -INT "$pid"
    wait "$pid" || status=$?
    DAEMON_PID=
    [ "$status" = 0 ] || fail "$label exited with $status after SIGINT: $(tail -5 "$log")"
    grep -q "Got SIGINT, shutting down" "$log" || fail "$label: no graceful stop line: $(tail -5 "$log")"
    echo "ok: $label stops gracefully on SIGINT with status 0"
}
