# shellcheck shell=bash
# scripts/release.sh --measure: the static musl binary beside the glibc build
# (target/release/pgqd), each ticking the same 100 pgq databases of a throwaway cluster
# in turn, twice each, alternating: CPU time (user + system, from /proc) over a window
# after a warm-up, and RSS at its end. A side-by-side look, not bench/run.sh: the machine
# may be shared, so compare the rounds with each other and read the load average.

MEASURE_DATABASES=${MEASURE_DATABASES:-100}
MEASURE_WARMUP=${MEASURE_WARMUP:-15}   # seconds: every database connected and ticking
MEASURE_WINDOW=${MEASURE_WINDOW:-60}   # seconds measured
MEASURE_TICKER_PERIOD=${MEASURE_TICKER_PERIOD:-1}

# N databases with pgq and a queue, copied from a template (fast).
make_measure_databases() {
    step "creating $MEASURE_DATABASES pgq databases"
    psql_rel postgres -c "create database mtemplate"
    psql_rel mtemplate -c "create extension pgq" -c "select pgq.create_queue('q')" >/dev/null
    local i
    for i in $(seq -w 1 "$MEASURE_DATABASES"); do
        psql_rel postgres -c "create database m$i template mtemplate"
    done
}

# Prints "cpu_ms rss_kib ticks" of one daemon run: $1 the binary; ticks from its stats
# lines (every 30 s), to show that it served every database.
measure_one() {
    local bin=$1 ini="$TMP/measure.ini"
    cat >"$ini" <<EOF
[pgqd]
base_connstr = host=$SOCK port=$PORT user=postgres
ticker_period = $MEASURE_TICKER_PERIOD
syslog = 0
EOF
    chmod 644 "$ini"
    setpriv "${AS_PG[@]}" "$bin" "$ini" >"$TMP/measure.log" 2>&1 &
    local pid=$! before after rss
    DAEMON_PID=$pid
    sleep "$MEASURE_WARMUP"
    before=$(cpu_ticks "$pid")
    sleep "$MEASURE_WINDOW"
    after=$(cpu_ticks "$pid")
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    kill -INT "$pid"
    wait "$pid" || fail "$bin exited with $? after SIGINT: $(tail -3 "$TMP/measure.log")"
    # shellcheck disable=SC2034 # read by stop_release_cluster
    DAEMON_PID=
    echo "$(((after - before) * 1000 / $(getconf CLK_TCK))) $rss" \
        "$(grep -o '{ticks: [0-9]*' "$TMP/measure.log" | awk '{n += $2} END {print n + 0}')"
}
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure_musl_vs_glibc() {
    step "building the glibc (cargo build --release) and musl (static profile) binaries"
    cargo build --locked --quiet --release
    env -u SOURCE_DATE_EPOCH cargo zigbuild --locked --quiet --profile static --target "$(rust_target x86_64)"
    start_release_cluster
    make_measure_databases
    local round name bin cpu rss ticks
    for round in 1 2; do
        for name in glibc musl; do
            bin=target/release/pgqd
            [ "$name" = glibc ] || bin=$(static_binary x86_64)
            step "round $round: $name, $MEASURE_DATABASES databases, ticker_period $MEASURE_TICKER_PERIOD," \
                "${MEASURE_WINDOW} s after ${MEASURE_WARMUP} s"
            read -r cpu rss ticks < <(measure_one "$bin")
            echo "$name round $round: CPU $cpu ms in ${MEASURE_WINDOW} s, RSS $rss KiB, $ticks ticks logged," \
                "load average $(cut -d' ' -f1-3 /proc/loadavg)"
        done
    done
}
