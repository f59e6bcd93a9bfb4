#!/usr/bin/env bash
# Starts a throwaway local PostgreSQL with pgq, creates a queue and a consumer, runs
# pgqd in the foreground on it, inserts events and shows the consumer receiving them
# in batches. Ctrl-C stops everything and removes the cluster.
# QUICKSTART_SECONDS=N stops by itself after N seconds (for scripted runs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh
ensure_packages  # PostgreSQL and pgq (with our .deb as its pgqd, never Debian's 3.5); no service left running

# cargo's own output stays visible: the first build compiles about 150 crates.
echo "== cargo build --locked --release"
cargo build --locked --release
PGQD="${CARGO_TARGET_DIR:-$PWD/target}/release/pgqd"
WORK=$(mktemp -d /tmp/pgqd-quickstart.XXXXXX)
PORT=${QUICKSTART_PORT:-54329}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"

PGQD_PID=""
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "== stopping"
    [ -n "$PGQD_PID" ] && kill -INT "$PGQD_PID" 2>/dev/null && wait "$PGQD_PID" 2>/dev/null || true
    as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup INT TERM EXIT

echo "== throwaway PostgreSQL $PG_MAJOR in $WORK (socket only, port $PORT)"
as_pg "$PG_BINDIR/initdb" -A trust -U postgres --no-sync -D "$WORK/data" >/dev/null
cat >> "$WORK/data/postgresql.conf" <<CONF
port = $PORT
unix_socket_directories = '$WORK'
listen_addresses = ''
fsync = off
CONF
as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
psql_q() { "$PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d "$@"; }
psql_q postgres -c "create database quickstart"
psql_q quickstart -c "create extension pgq" \
    -c "select pgq.create_queue('orders')" \
    -c "select pgq.register_consumer('orders', 'shipping')" >/dev/null

cat > "$WORK/pgqd.ini" <<INI
[pgqd]
base_connstr = host=$WORK port=$PORT user=postgres
initial_database = postgres
syslog = 0
stats_period = 10
INI
echo "== pgqd.ini:"; sed 's/^/    /' "$WORK/pgqd.ini"
echo "== running pgqd in the foreground (Ctrl-C to stop)"
"$PGQD" "$WORK/pgqd.ini" &
PGQD_PID=$!

consume() {
    # One consumer turn: take the next batch, print its events, finish it.
    psql_q quickstart <<'SQL'
select coalesce(
  (select 'batch ' || b || ': ' || coalesce(string_agg(ev_type || '=' || ev_data, ', ' order by ev_id), 'no events')
     from pgq.get_batch_events(b)),
  'batch ' || b)
  from pgq.next_batch('orders', 'shipping') as b where b is not null;
select pgq.finish_batch(b) from pgq.next_batch('orders', 'shipping') as b where b is not null;
SQL
}

n=0
start=$(date +%s)
while :; do
    n=$((n + 1))
    psql_q quickstart -c "select pgq.insert_event('orders', 'order', 'order-$n')" >/dev/null
    consume | grep -v '^[0-9]*$' | sed 's/^/consumer: /' || true
    sleep 1
    if [ -n "${QUICKSTART_SECONDS:-}" ] && [ $(( $(date +%s) - start )) -ge "$QUICKSTART_SECONDS" ]; then
        break
    fi
done
