# shellcheck shell=bash
# Shared by scripts/*.sh and bench/run.sh: find or install PostgreSQL and pgq
# (ensure_packages), and fetch the reference pgqd 3.5 without installing it
# (ensure_reference). Sets PG_MAJOR, PG_BINDIR and, for the reference, PGQD_REFERENCE.

newest_pg_major() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$dir" ] || continue
        dir=${dir#/usr/lib/postgresql/}; dir=${dir%%/*}
        if [ -z "$best" ] || [ "$dir" -gt "$best" ]; then best=$dir; fi
    done
    echo "$best"
}

# Runs apt-get as root: directly, through sudo without a password, or not at all (then
# prints the command to run and exits).
apt_root() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            echo "Missing packages. Install them with:" >&2
            echo "    sudo apt-get $*" >&2
            exit 1
        fi
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

apt_install() {
    echo "== installing: $*"
    apt_root update -q
    apt_root install -y -q --no-install-recommends "$@"
}

# postgresql-NN-pgq3 depends on Debian's pgqd 3.5, whose postinst enables and starts a
# system-wide pgqd.service: on a host running systemd it would tick every local database
# beside the pgqd under test. Stop and disable it (without systemd nothing was started).
silence_debian_pgqd() {
    dpkg -s pgqd 2>/dev/null | grep -q '^Status: install ok installed' || return 0
    [ -d /run/systemd/system ] || return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "== stopping and disabling Debian's pgqd.service (installed as a dependency of pgq)"
    $sudo systemctl disable --now pgqd.service
}

ensure_packages() {
    PG_MAJOR=$(newest_pg_major)
    if [ -z "$PG_MAJOR" ]; then
        apt_install postgresql
        PG_MAJOR=$(newest_pg_major)
    fi
    local missing=()
    [ -f "/usr/share/postgresql/$PG_MAJOR/extension/pgq.control" ] || missing+=("postgresql-$PG_MAJOR-pgq3")
    command -v runuser >/dev/null || missing+=(util-linux)
    # The benchmark runner (bench/run.sh), which the tests run in its quick mode.
    command -v python3 >/dev/null || missing+=(python3)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
        silence_debian_pgqd
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
