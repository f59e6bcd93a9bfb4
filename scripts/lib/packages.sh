# shellcheck shell=bash
# Shared by scripts/*.sh and bench/run.sh: find or install PostgreSQL and pgq
# (ensure_packages; never Debian's pgqd 3.5, and no system service left enabled or
# running), and fetch the reference pgqd 3.5 without installing it (ensure_reference).
# Sets PG_MAJOR, PG_BINDIR and, for the reference, PGQD_REFERENCE.

newest_pg_major() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$dir" ] || continue
        dir=${dir#/usr/lib/postgresql/}; dir=${dir%%/*}
        if [ -z "$best" ] || [ "$dir" -gt "$best" ]; then best=$dir; fi
    done
    echo "$best"
}

# Runs "$@" as root: directly or through sudo without a password.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}
can_root() { [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }

apt_root() { as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

# Installs Debian packages without leaving a system service behind. Server packages
# (postgresql, prometheus, etcd-server, patroni, pgbouncer, podman, our pgqd-rs) enable
# their units and start them; the tests start their own servers on free ports and want
# none of these. So: a policy-rc.d answering 101 ("action forbidden", honoured by
# invoke-rc.d and deb-systemd-invoke) while apt runs, unless one is there already (a
# container image's), then every unit the install enabled is disabled again.
POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_RC_D_MARK="# pgqd-rs scripts/lib/packages.sh: no service starts while it installs packages"
apt_install() {
    if ! can_root; then
        echo "Missing packages. Install them with:" >&2
        echo "    sudo apt-get install --no-install-recommends $*" >&2
        exit 1
    fi
    echo "== installing: $*"
    apt_root update -q
    local before status=0 ours=""
    before=$(enabled_units)
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '%s\n' '#!/bin/sh' "$POLICY_RC_D_MARK" 'exit 101' | as_root tee "$POLICY_RC_D" >/dev/null
        as_root chmod 755 "$POLICY_RC_D"
        ours=1
    fi
    apt_root install -y -q --no-install-recommends "$@" || status=$?
    # Removed only if still ours (a concurrent run may have put its own).
    if [ -n "$ours" ] && grep -qxF "$POLICY_RC_D_MARK" "$POLICY_RC_D" 2>/dev/null; then
        as_root rm -f "$POLICY_RC_D"
    fi
    [ "$status" -eq 0 ] || exit "$status"
    disable_new_units "$before"
}

# The units enabled in /etc (links in *.wants/ and *.requires/), one a line.
enabled_units() {
    find /etc/systemd/system -mindepth 2 -maxdepth 2 -type l \
        \( -path '*.wants/*' -o -path '*.requires/*' \) -printf '%f\n' 2>/dev/null | sort -u
}

# Disables (and, where systemd runs, stops) the units enabled since $1, a list from
# enabled_units; systemctl works on the links without a running systemd too. A unit
# disabled by hand stays disabled when its package is upgraded. The init script's rc
# links are disabled as well (for a host booted with sysvinit).
disable_new_units() {
    local unit name
    for unit in $(comm -13 <(echo "$1") <(enabled_units)); do
        echo "== disabling $unit (enabled by the install; the tests start their own servers)"
        if [ -d /run/systemd/system ]; then
            as_root systemctl disable --now --quiet "$unit"
        elif command -v systemctl >/dev/null; then
            as_root systemctl --root=/ disable --quiet "$unit"
        else
            as_root rm -f /etc/systemd/system/*.wants/"$unit" /etc/systemd/system/*.requires/"$unit"
        fi
        name=${unit%.service}
        if [ "$name" != "$unit" ] && [ -x "/etc/init.d/$name" ]; then
            as_root update-rc.d "$name" disable >/dev/null
        fi
    done
}

# postgresql-NN-pgq3 depends on pgqd. Debian's pgqd 3.5 would satisfy it, with a
# system-wide pgqd.service; our own package provides pgqd (and conflicts with 3.5), so
# it goes into the same install: built here with cargo deb (a release build, which
# scripts/container-test.sh and the quickstart need later anyway). Prints its path.
own_deb() {
    command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0 >&2
    echo "== building our Debian package, which provides the pgqd that pgq depends on" >&2
    cargo deb --locked --quiet | tail -1
}

# True when some installed package provides pgqd (ours, or a Debian pgqd 3.5 that the
# machine already had: then it is left alone).
pgqd_provided() {
    dpkg-query -W -f='${Status}\n' pgqd pgqd-rs 2>/dev/null | grep -q '^install ok installed'
}

ensure_packages() {
    PG_MAJOR=$(newest_pg_major)
    if [ -z "$PG_MAJOR" ]; then
        apt_install postgresql
        PG_MAJOR=$(newest_pg_major)
    fi
    local missing=()
    if [ ! -f "/usr/share/postgresql/$PG_MAJOR/extension/pgq.control" ]; then
        missing+=("postgresql-$PG_MAJOR-pgq3")
        pgqd_provided || missing+=("$(own_deb)")
    fi
    command -v runuser >/dev/null || missing+=(util-linux)
    # The benchmark runner (bench/run.sh), which the tests run in its quick mode.
    command -v python3 >/dev/null || missing+=(python3)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    PG_BINDIR="/usr/lib/postgresql/$PG_MAJOR/bin"
    echo "== PostgreSQL $PG_MAJOR at $PG_BINDIR with pgq"
}

# What the test suite needs beyond PostgreSQL and pgq: Patroni with etcd (failover
# tests), setpriv to run Patroni as the postgres user, Prometheus with promtool (the
# alert rules and a real scrape), pgbouncer (the transaction-pooler guard), ip and
# iptables (the network partition tests). The tests
# start their own servers on free ports.
ensure_test_packages() {
    local missing=()
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v patroni >/dev/null || missing+=(patroni)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v etcdctl >/dev/null || missing+=(etcd-client)
    command -v setpriv >/dev/null || missing+=(util-linux)
    command -v pgbouncer >/dev/null || missing+=(pgbouncer)
    # The partition tests: network namespaces, veth pairs, iptables inside them.
    command -v ip >/dev/null || missing+=(iproute2)
    command -v iptables >/dev/null || missing+=(iptables)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# Debian's pgqd 3.5, for the side-by-side benchmark, unpacked and never installed: the
# package's postinst enables a system-wide pgqd.service, which nobody running a benchmark
# asked for. `apt-get download` + `dpkg -x` into a per-user cache directory rather than
# under target/: it survives `cargo clean`, every checkout of the repository shares it,
# and it is nothing cargo built. PGQD_REFERENCE, when already set to a program that runs,
# is kept (a reference built elsewhere).
ensure_reference() {
    if [ -n "${PGQD_REFERENCE:-}" ] && "$PGQD_REFERENCE" -V >/dev/null 2>&1; then
        echo "== reference pgqd: $PGQD_REFERENCE ($("$PGQD_REFERENCE" -V))"
        export PGQD_REFERENCE
        return
    fi
    local cache="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/pgqd-reference"
    PGQD_REFERENCE="$cache/usr/bin/pgqd"
    if [ ! -x "$PGQD_REFERENCE" ]; then
        fetch_reference "$cache"
    fi
    if ! "$PGQD_REFERENCE" -V >/dev/null 2>&1; then
        install_reference_libraries "$cache"
    fi
    echo "== reference pgqd: $PGQD_REFERENCE ($("$PGQD_REFERENCE" -V))"
    export PGQD_REFERENCE
}

# Downloads pgqd's .deb and unpacks it into $1. The unpacking goes to a temporary sibling
# first and is renamed into place, so concurrent runs (parallel tests) never see half a tree.
fetch_reference() {
    local cache=$1 tmp
    mkdir -p "$(dirname "$cache")"
    tmp=$(mktemp -d "$cache.XXXXXX")
    echo "== fetching the reference pgqd 3.5 into $cache (apt-get download pgqd; not installed)"
    # apt-get download writes into the current directory; as root it warns that the
    # download is not sandboxed (the _apt user cannot write there), which is harmless.
    if ! (cd "$tmp" && apt-get download -q pgqd >/dev/null 2>&1); then
        apt_root update -q  # no package lists yet (a fresh container)
        (cd "$tmp" && apt-get download -q pgqd)
    fi
    dpkg -x "$tmp"/pgqd_*.deb "$tmp/root"
    mv "$tmp"/pgqd_*.deb "$tmp/root/"
    mv -T "$tmp/root" "$cache" 2>/dev/null || true  # another run got there first: keep theirs
    rm -rf "$tmp"
}

# Installs the shared libraries the unpacked binary needs (libevent, libpq5; plain
# libraries, no service), taken from the package's Depends line.
install_reference_libraries() {
    local cache=$1 dep missing=()
    for dep in $(dpkg-deb -f "$cache"/pgqd_*.deb Depends | tr ',' '\n' | sed -n 's/^ *\(lib[^ ]*\).*/\1/p'); do
        dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'install ok installed' || missing+=("$dep")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    if ! "$PGQD_REFERENCE" -V >/dev/null; then
        echo "the reference pgqd at $PGQD_REFERENCE does not run (ldd shows what it lacks)" >&2
        exit 1
    fi
}
