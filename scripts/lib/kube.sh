# shellcheck shell=bash
# Sourced by scripts/container-test.sh, whose helpers and variables it uses (step, fail,
# wait_for, psql_host, apt_install; CACHE, TMP, SOCK, PORT, PASSWORD). The Kubernetes
# Deployment of docker/kubernetes/deployment/:
#  - every manifest validated offline (scripts/lib/kube_manifests.py check): the core
#    kinds against the Kubernetes schemas of kubernetes-validate (PyPI), the PodMonitor
#    and PrometheusRule against the CRD schemas of @kubernetes-models/prometheus-operator
#    (npm), the PrometheusRule's groups equal to config/prometheus/pgqd.rules.yml's;
#  - the ConfigMap and the Deployment (2 replicas) under `podman kube play`, pointed at
#    the script's throwaway cluster through its socket (user ticker, whose password
#    comes from the Secret): exactly one replica ticks and the other follows (Ready,
#    /healthz 200); the leading pod's container killed, the other ticks: the time from
#    the kill to its first tick, over KUBE_RUNS runs. Everything is removed afterwards,
#    also on failure (kube_cleanup).

KUBE_PODS=(pgqd-pod-0 pgqd-pod-1) # podman 4.3 names a Deployment's pods NAME-pod-N
KUBE_SECRET=pgqd-postgres
KUBE_RUNS=${KUBE_RUNS:-3} # more for a distribution: KUBE_RUNS=10 scripts/container-test.sh
KUBE_TAKEOVER_BOUND=5 # seconds a takeover may take here; the claim (2 s) is reported
# The daemon's ticker call (src/jobs/ticker.rs TICK_ALL), as pg_stat_activity shows it.
KUBE_TICK_SQL="select pgq.ticker(), pg_backend_pid()"

kube_tools() {
    [ -x "$CACHE/venv/bin/kubernetes-validate" ] ||
        "$CACHE/venv/bin/pip" install --quiet kubernetes-validate==1.37.0
    command -v node >/dev/null || apt_install nodejs
    command -v npm >/dev/null || apt_install npm
    [ -d "$CACHE/npm/node_modules/@kubernetes-models/prometheus-operator" ] ||
        npm install --prefix "$CACHE/npm" --silent --no-audit --no-fund \
            @kubernetes-models/prometheus-operator@6.0.0 >/dev/null
}

kube_validate() {
    step "docker/kubernetes/deployment/ validated offline"
    kube_tools
    KUBE_MODELS="$CACHE/npm/node_modules" "$CACHE/venv/bin/python" \
        scripts/lib/kube_manifests.py check "$TMP/kube-rules.yml" || fail "the manifests do not validate"
    # The same groups as pgqd.rules.yml, which the integration tests check with promtool;
    # checked here too where promtool is installed (scripts/test.sh installs it).
    if command -v promtool >/dev/null; then
        promtool check rules "$TMP/kube-rules.yml" >/dev/null || fail "promtool rejects the PrometheusRule's rules"
        echo "ok: promtool check rules passes on the PrometheusRule's groups"
    fi
}

# The lock holders (application_name = pod name) of ctest's leader lock, comma-separated.
kube_holders() {
    psql_host ctest -c "select coalesce(string_agg(a.application_name, ',' order by 1), '') from pg_catalog.pg_locks l join pg_catalog.pg_stat_activity a on a.pid = l.pid where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_catalog.pg_database where datname = 'ctest')"
}
# The clients whose last statement in ctest is the ticker call.
kube_tickers() {
    psql_host ctest -c "select coalesce(string_agg(distinct application_name, ','), '') from pg_catalog.pg_stat_activity where datname = 'ctest' and query = '$KUBE_TICK_SQL'"
}
# GET PATH on a replica's listener, from inside its container (no curl in the image).
kube_get() {
    podman exec "$1-pgqd" bash -c "exec 3<>/dev/tcp/127.0.0.1/10187 && printf 'GET $2 HTTP/1.0\r\n\r\n' >&3 && cat <&3"
}
kube_metric() { kube_get "$1" /metrics | grep -F "$2" | awk '{print $2}'; }
kube_follows() { [ "$(kube_holders)" = "$1" ] && psql_host ctest -c "select 1 from pg_catalog.pg_stat_activity where application_name = '$2'" | grep -q 1; }

kube_play() {
    step "podman kube play: the Deployment's 2 replicas against the throwaway cluster"
    kube_cleanup
    # A queue that ticks at every ticker call (no lag, no idle period), to time takeovers.
    psql_host ctest -c "select pgq.create_queue('kq')" \
        -c "select pgq.set_queue_config('kq', 'ticker_max_lag', '0')" \
        -c "select pgq.set_queue_config('kq', 'ticker_idle_period', '0')" >/dev/null
    printf '{"username": "%s", "password": "%s"}' "$(printf ticker | base64)" "$(printf '%s' "$PASSWORD" | base64 -w0)" |
        podman secret create "$KUBE_SECRET" - >/dev/null
    "$CACHE/venv/bin/python" scripts/lib/kube_manifests.py play \
        "host=/var/run/postgresql port=$PORT sslmode=require target_session_attrs=read-write connect_timeout=5" \
        "$SOCK" >"$TMP/kube-deployment.yaml"
    # podman logs each probe it cannot hand to systemd (there is none here): not a failure.
    podman kube play "$TMP/kube-deployment.yaml" >"$TMP/kube-deployment.log" 2>&1 ||
        fail "kube play: $(cat "$TMP/kube-deployment.log")"
    local pod
    for pod in "${KUBE_PODS[@]}"; do
        [ "$(podman inspect --format '{{.State.Running}}' "$pod-pgqd" 2>/dev/null)" = true ] ||
            fail "replica $pod is not running: $(podman pod ps 2>&1)"
    done
    echo "ok: podman kube play made ${#KUBE_PODS[@]} replicas: ${KUBE_PODS[*]}"
}

# Exactly one replica ticks: for 3 s, sampled every 0.2 s, one lock holder and no other
# client calling pgq.ticker(); the leader's pgqd_leader is 1 and its ticker calls grow,
# the follower's are 0 and stay 0; the follower is Ready and healthy. Sets KUBE_LEADER
# and KUBE_FOLLOWER.
kube_one_ticks() {
    wait_for "one replica to take ctest's leader lock" kube_holders_one
    KUBE_LEADER=$(kube_holders)
    KUBE_FOLLOWER=${KUBE_PODS[0]}
    [ "$KUBE_LEADER" != "$KUBE_FOLLOWER" ] || KUBE_FOLLOWER=${KUBE_PODS[1]}
    wait_for "$KUBE_FOLLOWER to follow" kube_follows "$KUBE_LEADER" "$KUBE_FOLLOWER"
    local calls_before holders tickers i
    calls_before=$(kube_metric "$KUBE_LEADER" 'pgqd_ticker_calls_total{datname="ctest",result="ok"}')
    for i in $(seq 15); do
        holders=$(kube_holders)
        tickers=$(kube_tickers)
        [ "$holders" = "$KUBE_LEADER" ] || fail "sample $i: leader lock held by '$holders', not $KUBE_LEADER alone"
        [ -z "$tickers" ] || [ "$tickers" = "$KUBE_LEADER" ] || fail "sample $i: pgq.ticker() called by '$tickers'"
        sleep 0.2
    done
    [ "$(kube_metric "$KUBE_LEADER" 'pgqd_leader{datname="ctest"}')" = 1.0 ] || fail "$KUBE_LEADER's pgqd_leader is not 1"
    [ "$(kube_metric "$KUBE_FOLLOWER" 'pgqd_leader{datname="ctest"}')" = 0.0 ] || fail "$KUBE_FOLLOWER's pgqd_leader is not 0"
    [ "$(kube_metric "$KUBE_LEADER" 'pgqd_ticker_calls_total{datname="ctest",result="ok"}')" -gt "$calls_before" ] ||
        fail "$KUBE_LEADER's ticker calls did not grow"
    [ "$(kube_metric "$KUBE_FOLLOWER" 'pgqd_ticker_calls_total{datname="ctest",result="ok"}')" = 0 ] ||
        fail "$KUBE_FOLLOWER called pgq.ticker()"
    echo "ok: exactly one replica ticks ($KUBE_LEADER); $KUBE_FOLLOWER follows (3 s of samples, pgqd_leader, ticker calls)"
    for path in /readyz /healthz /livez; do
        kube_get "$KUBE_FOLLOWER" "$path" | head -1 | grep -q " 200 " || fail "the follower's $path is not 200"
    done
    echo "ok: the follower answers 200 on /readyz, /healthz and /livez (Ready, as the manifest intends)"
}
kube_holders_one() { [ -n "$(kube_holders)" ] && [[ "$(kube_holders)" != *,* ]]; }

# The leading replica's container killed: the time from the kill to the first tick of
# queue kq after it (tick_time, the ticking transaction's start, so polling does not
# blur it; kq ticks at every ticker call). Ticks later than the moment `podman kill`
# returned, when the old leader is surely gone, are the new leader's. Then the killed
# pod is started again (as the kubelet restarts a container) and follows.
kube_takeover() {
    local run=$1 killed=$KUBE_LEADER other=$KUBE_FOLLOWER t0 t1 first="" until=$((SECONDS + DEADLINE))
    t0=$(date +%s.%N)
    podman kill "$killed-pgqd" >/dev/null 2>>"$TMP/podman.log" || fail "podman kill $killed-pgqd"
    t1=$(date +%s.%N)
    until [ -n "$first" ]; do
        [ "$SECONDS" -lt "$until" ] || fail "run $run: $other did not tick within ${DEADLINE}s of the kill: $(kube_state)"
        sleep 0.1
        first=$(psql_host ctest -c "select extract(epoch from min(t.tick_time)) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'kq' and t.tick_time > to_timestamp($t1)")
    done
    local took
    took=$(awk -v a="$first" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
    KUBE_TAKEOVERS+=("$took")
    [ "$(kube_holders)" = "$other" ] || fail "run $run: the lock is held by '$(kube_holders)', not $other"
    echo "run $run: $killed killed; $other ticked ${took} s later"
    awk -v t="$took" -v b="$KUBE_TAKEOVER_BOUND" 'BEGIN { exit !(t < b) }' ||
        fail "run $run: the takeover took ${took} s (bound ${KUBE_TAKEOVER_BOUND} s)"
    # Podman stops the pod of the killed container (kube play's exit policy) from a
    # cleanup process, seconds later on a busy machine; a pod started before that would
    # be stopped under the test (seen: the restarted replica stopped, the other killed
    # by the next run, nothing left to tick). So the pod is started once it has stopped.
    wait_for "$killed's pod to stop" kube_pod_exited "$killed"
    podman pod start "$killed" >/dev/null 2>>"$TMP/podman.log" || fail "podman pod start $killed"
    KUBE_LEADER=$other KUBE_FOLLOWER=$killed
    until=$((SECONDS + DEADLINE))
    until kube_follows "$KUBE_LEADER" "$KUBE_FOLLOWER"; do
        [ "$SECONDS" -lt "$until" ] || fail "run $run: $killed does not follow again within ${DEADLINE}s: $(kube_state)"
        sleep 0.5
    done
}
kube_pod_exited() { [ "$(podman pod inspect --format '{{.State}}' "$1")" = Exited ]; }
# What the replicas and the server say, for a failure message.
kube_state() {
    echo "lock held by '$(kube_holders)'"
    podman ps -a --format '{{.Names}} {{.Status}}' 2>&1
    psql_host ctest -c "select pid, application_name, state, left(query, 50) from pg_catalog.pg_stat_activity where application_name like 'pgqd%'" 2>&1
    local pod
    for pod in "${KUBE_PODS[@]}"; do
        echo "-- $pod:" && podman logs --tail 5 "$pod-pgqd" 2>&1
    done
}

kube_cleanup() {
    podman pod rm --force --ignore "${KUBE_PODS[@]}" >/dev/null 2>&1 || true
    podman secret rm "$KUBE_SECRET" >/dev/null 2>&1 || true
    [ -z "${SOCK:-}" ] ||
        psql_host ctest -c "select pgq.drop_queue('kq', true) from pgq.queue where queue_name = 'kq'" >/dev/null 2>&1 || true
}

test_kube_deployment() {
    local volumes
    volumes=$(podman volume ls -q)
    kube_validate
    kube_play
    kube_one_ticks
    step "the leading replica's container killed, $KUBE_RUNS times"
    KUBE_TAKEOVERS=()
    local run
    for run in $(seq "$KUBE_RUNS"); do kube_takeover "$run"; done
    local sorted
    sorted=$(printf '%s\n' "${KUBE_TAKEOVERS[@]}" | sort -n | tr '\n' ' ')
    echo "ok: the other replica ticks after each kill, sorted: ${sorted}s (the claim: within 2 s)"
    kube_cleanup
    local pod
    for pod in "${KUBE_PODS[@]}"; do
        if podman pod exists "$pod"; then fail "pod $pod is left"; fi
    done
    if podman secret ls --format '{{.Name}}' | grep -qx "$KUBE_SECRET"; then fail "the Secret is left"; fi
    [ "$(podman volume ls -q)" = "$volumes" ] || fail "volumes are left: $(podman volume ls -q)"
    echo "ok: pods, Secret and volumes removed"
}
