# Shared by scripts/*.sh: find or install PostgreSQL, pgq and pgqd 3.5.
# Sets PG_MAJOR and PG_BINDIR.

newest_pg_major() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$dir" ] || continue
        dir=${dir#/usr/lib/postgresql/}; dir=${dir%%/*}
        if [ -z "$best" ] || [ "$dir" -gt "$best" ]; then best=$dir; fi
    done
    echo "$best"
}

apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo="sudo"
        else
            echo "Missing packages. Install them with:" >&2
            echo "    sudo apt-get install -y $*" >&2
            exit 1
        fi
    fi
    echo "== installing: $*"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

ensure_packages() {
    PG_MAJOR=$(newest_pg_major)
    if [ -z "$PG_MAJOR" ]; then
        apt_install postgresql
        PG_MAJOR=$(newest_pg_major)
    fi
    local missing=()
    [ -f "/usr/share/postgresql/$PG_MAJOR/extension/pgq.control" ] || missing+=("postgresql-$PG_MAJOR-pgq3")
    [ -x /usr/bin/pgqd ] || missing+=(pgqd)
    command -v runuser >/dev/null || missing+=(util-linux)
    # The benchmark runner (bench/run.sh), which the tests run in its quick mode.
    command -v python3 >/dev/null || missing+=(python3)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    PG_BINDIR="/usr/lib/postgresql/$PG_MAJOR/bin"
    echo "== PostgreSQL $PG_MAJOR at $PG_BINDIR with pgq; reference pgqd: $(/usr/bin/pgqd -V)"
}
