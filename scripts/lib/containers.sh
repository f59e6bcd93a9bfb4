# shellcheck shell=bash
# Shared by scripts/container-test.sh and scripts/release.sh: podman confined to a cache
# of our own, and the check that a pgqd ticks.

# Podman with its own storage, network configs and settings in directory $1: runc (crun
# cannot use hybrid cgroups), cgroupfs and file events (no systemd needed), rlimits
# under the hard limit. The machine's own podman is untouched.
podman_in_cache() {
    local dir=$1
    mkdir -p "$dir/networks"
    cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_config_dir = "$dir/networks"
CONF
    cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
    export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
}

# Asserts that some pgqd ticks queue q of database $2, read with the psql function $1
# (called as `$1 DB -c SQL`): an event makes pgq.ticker() add a tick (within
# ticker_max_lag, 3 s) only while a ticker runs. $3 names the pgqd; the caller's
# wait_for bounds the wait.
assert_ticks_via() {
    local psql=$1 db=$2 label=$3 before
    before=$("$psql" "$db" -c "select count(*) from pgq.tick")
    "$psql" "$db" -c "select pgq.insert_event('q', 'test', 'x')" >/dev/null
    wait_for "$label to tick" ticks_above "$psql" "$db" "$before"
    echo "ok: $label ticks"
}
ticks_above() { [ "$("$1" "$2" -c "select count(*) from pgq.tick")" -gt "$3" ]; }
