# shellcheck shell=bash
# scripts/release.sh's trial of docs/migration.md's Debian path, in a throwaway Debian 12
# root (a podman container; apt reaches Debian's archive): pgqd 3.5 installed with
# postgresql-15-pgq3 and its /etc/pgqd.ini edited; `apt install ./pgqd-rs_*.deb` swaps it
# out keeping the file and pgq; `apt install pgqd` rolls back to 3.5, the file still
# kept. The root with pgqd 3.5 is an image layer (policy-rc.d keeps services from
# starting), made once.

SWAP_BASE=docker.io/library/debian:bookworm-slim

# The local Debian base image: scripts/container-test.sh's mmdebstrap tarball when it
# exists, else a minbase made here.
ensure_swap_base() {
    podman image exists "$SWAP_BASE" && return
    local tar=${PGQD_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgqd-container}/base.tar
    if [ ! -s "$tar" ]; then
        tar=$RELEASE_CACHE/base.tar
        command -v mmdebstrap >/dev/null || apt_install mmdebstrap
        [ -s "$tar" ] || mmdebstrap --variant=minbase --format=tar --quiet bookworm "$tar"
    fi
    podman import --quiet "$tar" "$SWAP_BASE" >/dev/null
}

check_deb_swap_rollback() {
    step "the amd64 .deb swaps pgqd 3.5 out and back in a throwaway root"
    ensure_swap_base
    mkdir -p "$STAGE/empty"
    podman build --quiet -t localhost/pgqd35-release-root -f - "$STAGE/empty" >/dev/null <<EOF
FROM $SWAP_BASE
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgqd postgresql-15-pgq3 \
    && echo "ticker_period = 2" >>/etc/pgqd.ini
EOF
    podman run --rm -v "$PWD/$DIST:/dist:ro" localhost/pgqd35-release-root sh -ec "
        installed() { dpkg -s \"\$1\" 2>/dev/null | grep -q '^Status: install ok installed'; }
        apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \"\$@\" </dev/null >/dev/null; }
        apt_install /dist/pgqd-rs_${VERSION}-1_amd64.deb
        installed pgqd-rs && installed postgresql-15-pgq3
        if installed pgqd; then echo 'pgqd 3.5 is still installed' >&2; exit 1; fi
        tail -1 /etc/pgqd.ini | grep -qx 'ticker_period = 2'
        pgqd -V | grep -qx 'pgqd version $VERSION'
        echo 'ok: swap: pgqd-rs in, pgqd 3.5 out, postgresql-15-pgq3 kept, the edited /etc/pgqd.ini kept'
        apt_install pgqd
        installed pgqd && installed postgresql-15-pgq3
        if installed pgqd-rs; then echo 'pgqd-rs is still installed' >&2; exit 1; fi
        tail -1 /etc/pgqd.ini | grep -qx 'ticker_period = 2'
        pgqd -V | grep -qx 'pgqd version 3.5'
        echo 'ok: rollback: apt install pgqd brings 3.5 back, the edited /etc/pgqd.ini kept'" ||
        fail "the swap or the rollback failed"
}
