#!/bin/sh
# The part of the official postgres image's entrypoint the examples use: a new cluster
# in an empty PGDATA (POSTGRES_USER with POSTGRES_PASSWORD, trust on the unix socket,
# scram-sha-256 over TCP; or POSTGRES_PASSWORD_FILE), POSTGRES_DB created, /docker-entrypoint-initdb.d/*.sql run
# in it; then the server in the foreground. Started as root, like the official image it
# prepares the socket and data directories (a fresh volume is root's) and drops to
# postgres.
set -eu
if [ "$(id -u)" = 0 ]; then
    install -d -o postgres -g postgres -m 3777 /var/run/postgresql
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
    fi
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA"
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "create database \"$db\""
    fi
    for f in /docker-entrypoint-initdb.d/*.sql; do
        if [ -e "$f" ]; then psql -v ON_ERROR_STOP=1 -U "$user" -d "$db" -f "$f"; fi
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
if [ "$1" = postgres ]; then
    shift
    exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
