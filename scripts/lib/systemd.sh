# shellcheck shell=bash
# The .deb under a real systemd: a Debian root booted with systemd as PID 1 by podman
# (--systemd=always), for scripts/container-test.sh (test_systemd, which needs its
# podman settings, base image, step/fail/wait_for and the .deb in $CACHE/deb/out).
#  0. without systemd, the user's `apt install ./pgqd-rs_*.deb postgresql-15-pgq3`;
#  1. scripts/lib/packages.sh installs PostgreSQL and pgq as the tests do: our .deb is
#     the pgqd pgq depends on (no pgqd 3.5), and no service is left enabled or running;
#  2. pgqd.service with Debian's default /etc/pgqd.ini: Type=notify readiness, ticking,
#     STATUS=, the logfile and pidfile under ProtectSystem=strict, reload (SIGHUP),
#     stop (SIGINT, status 0, pidfile removed), the watchdog restarting a stopped
#     process; a logfile elsewhere refused until a drop-in allows its directory;
#  3. the template unit pgqd@15-main.service with /etc/pgqd/15-main.ini;
#  4. the swap from Debian's pgqd 3.5 (its /etc/init.d/pgqd left behind, not run) and
#     its purge, which disables pgqd.service and triggers our package to enable it.

SD_IMAGE=localhost/pgqd-systemd-root
SD_NAME=pgqd-systemd

# A Debian root with systemd, and the packages the test installs downloaded (not
# installed) into its apt cache. Made once; podman's layer cache keeps it.
make_systemd_image() {
    mkdir -p "$CACHE/empty"
    podman build --quiet -t "$SD_IMAGE" -f - "$CACHE/empty" >/dev/null <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd systemd-sysv python3 \
    && apt-get install -y -qq --download-only --no-install-recommends postgresql postgresql-15-pgq3 pgqd
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
EOF
}

sd() { podman exec "$SD_NAME" "$@"; }
sd_sh() { podman exec "$SD_NAME" bash -ec "$1"; }
sd_psql() { sd runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
sd_show() { sd systemctl show -p "$2" --value "$1"; }
sd_is() { [ "$(sd_show "$1" "$2")" = "$3" ]; }
# The unit's journal since the last (re)start of the container's test step.
sd_journal() { sd journalctl -q -o cat --no-pager -u "$1"; }
sd_journal_has() { sd_journal "$1" | grep -qF "$2"; }
# shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not a shell variable
sd_pkg_installed() { sd dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed'; }
sd_booted() { sd systemctl is-system-running | grep -qE '^(running|degraded)$'; }
sd_status_shown() { sd systemctl status --no-pager "$1" | grep -q 'Status: "ticking 1/1 databases'; }
sd_status_sent() { [ -n "$(sd_show "$1" StatusText)" ]; } # pgqd 3.5 sends none
sd_restarted() { sd_is "$1" NRestarts 1 && sd_is "$1" ActiveState active; }

sd_assert_ticks() { assert_ticks_via sd_psql sdtest "$1"; }

# CAP_SYS_ADMIN: systemd sets up ProtectSystem= and ReadWritePaths= with a mount
# namespace; without the capability it skips them silently in a container, and a
# logfile anywhere would be writable. The network is podman's default: apt-get update.
sd_boot() {
    podman rm --force --ignore "$SD_NAME" >/dev/null
    podman run --detach --name "$SD_NAME" --systemd=always --cap-add SYS_ADMIN \
        --volume "$PWD/scripts:/src/scripts:ro" --volume "$CACHE/deb/out:/deb:ro" \
        "$SD_IMAGE" >/dev/null
    wait_for "systemd to boot in the container" sd_booted
}

# 1. What scripts/test.sh and the quickstart do on a machine without PostgreSQL.
sd_test_script_install() {
    step "systemd: scripts/lib/packages.sh installs PostgreSQL and pgq"
    sd_sh '. /src/scripts/lib/packages.sh; own_deb() { echo /deb/pgqd.deb; }; ensure_packages' \
        >"$TMP/systemd-install.log" 2>&1 || fail "ensure_packages: $(tail -20 "$TMP/systemd-install.log")"
    sd_pkg_installed pgqd-rs || fail "our .deb was not installed"
    sd_pkg_installed postgresql-15-pgq3 || fail "pgq was not installed"
    if sd_pkg_installed pgqd; then fail "Debian's pgqd 3.5 was installed"; fi
    local unit
    for unit in pgqd postgresql; do
        sd_is "$unit" ActiveState inactive || fail "$unit.service is $(sd_show "$unit" ActiveState)"
        sd_is "$unit" UnitFileState disabled || fail "$unit.service is $(sd_show "$unit" UnitFileState)"
    done
    # Not even for a moment: policy-rc.d kept the packages' scripts from starting them.
    if sd journalctl -q -o cat -u pgqd -u postgresql -u 'postgresql@*' | grep '^Start'; then
        fail "a service was started during the install"
    fi
    if sd test -e /usr/sbin/policy-rc.d; then fail "policy-rc.d left behind"; fi
    echo "ok: pgq installed with our .deb as its pgqd, no pgqd 3.5; pgqd and postgresql disabled, never started"
}

# The user's path, in a throwaway root of the same image (no systemd running, offline:
# the packages are in its apt cache): `apt install ./pgqd-rs_*.deb postgresql-15-pgq3`
# brings pgq with our package as its pgqd, never pgqd 3.5; our unit is enabled.
sd_test_user_path() {
    step "the user's path: apt install ./pgqd-rs_*.deb postgresql-15-pgq3"
    podman run --rm --network none --volume "$CACHE/deb/out:/deb:ro" "$SD_IMAGE" bash -ec '
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            /deb/pgqd.deb postgresql-15-pgq3 </dev/null >/tmp/apt.log 2>&1 || { tail /tmp/apt.log; exit 1; }
        dpkg -s pgqd-rs postgresql-15-pgq3 | grep -c "^Status: install ok installed" | grep -qx 2
        if dpkg -s pgqd 2>/dev/null | grep -q "^Status: install ok installed"; then
            echo "pgqd 3.5 was installed" >&2
            exit 1
        fi
        [ -L /etc/systemd/system/multi-user.target.wants/pgqd.service ]' \
        >"$TMP/user-path.log" 2>&1 || fail "the user's path: $(tail -5 "$TMP/user-path.log")"
    echo "ok: pgq installed with our package as its pgqd, no pgqd 3.5; pgqd.service enabled"
}

sd_cluster() {
    sd systemctl start postgresql@15-main
    sd_psql -c "create database sdtest"
    sd_psql sdtest -c "create extension pgq" -c "select pgq.create_queue('q')" >/dev/null
}

# 2. pgqd.service as the package installs it, with Debian's default /etc/pgqd.ini.
sd_test_unit() {
    step "systemd: pgqd.service"
    sd systemctl enable --now --quiet pgqd || fail "systemctl start pgqd: $(sd_journal pgqd | tail -5)"
    sd_is pgqd ActiveState active || fail "pgqd is $(sd_show pgqd ActiveState) right after start"
    # Type=notify: the unit becomes active at READY=1, which pgqd sends after its first
    # listing of the databases, so later than the line it logs before listing (with
    # Type=simple it would be active at the fork, before that line). Both clocks are the
    # machine's: pgqd's line has milliseconds, systemd's timestamp microseconds.
    local listing active
    listing=$(sd_journal pgqd | sed -n 's/^\([0-9-]* [0-9:.]*\) UTC .*auto-detecting dbs.*/\1/p' | tail -1)
    active=$(sd systemctl show -P ActiveEnterTimestamp --timestamp=us+utc pgqd)
    [ -n "$listing" ] || fail "no 'auto-detecting dbs' line: $(sd_journal pgqd | head -5)"
    [ "$(date -u -d "${active#* }" +%s%6N)" -gt "$(date -u -d "$listing UTC" +%s%6N)" ] ||
        fail "pgqd.service active at $active, before pgqd's first listing at $listing"
    echo "ok: systemctl start returns once pgqd is ready (Type=notify)"
    sd_assert_ticks "pgqd.service"
    sd_is pgqd WatchdogUSec 1min || fail "WatchdogUSec is $(sd_show pgqd WatchdogUSec)"
    wait_for "STATUS= in systemctl status" sd_status_shown pgqd
    echo "ok: systemctl status shows pgqd's STATUS=; WatchdogSec=60s"
    # Debian's /etc/pgqd.ini: both paths writable under ProtectSystem=strict.
    [ "$(sd cat /run/postgresql/pgqd.pid)" = "$(sd_show pgqd MainPID)" ] || fail "no pidfile with pgqd's pid"
    sd grep -q 'pgq version ok' /var/log/postgresql/pgqd.log || fail "nothing in /var/log/postgresql/pgqd.log"
    echo "ok: the pidfile and logfile of Debian's /etc/pgqd.ini are written"
    sd systemctl reload pgqd
    wait_for "the SIGHUP line" sd_journal_has pgqd "Got SIGHUP, re-reading config"
    sd_is pgqd ActiveState active || fail "pgqd is $(sd_show pgqd ActiveState) after reload"
    echo "ok: systemctl reload is a SIGHUP"
    sd systemctl stop pgqd
    sd_journal_has pgqd "Got SIGINT, shutting down" || fail "no SIGINT line after systemctl stop"
    sd_is pgqd Result success || fail "stop result $(sd_show pgqd Result)"
    sd_is pgqd ExecMainStatus 0 || fail "pgqd exited with $(sd_show pgqd ExecMainStatus)"
    if sd test -e /run/postgresql/pgqd.pid; then fail "pidfile left after stop"; fi
    echo "ok: systemctl stop is SIGINT, status 0, pidfile removed"
}

# The watchdog at 2 s (a runtime drop-in): pgqd pings in time, and a stopped process
# is killed and restarted.
sd_test_watchdog() {
    step "systemd: the watchdog"
    sd_sh 'mkdir -p /run/systemd/system/pgqd.service.d
        printf "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\n" >/run/systemd/system/pgqd.service.d/watchdog.conf
        systemctl daemon-reload && systemctl start pgqd'
    # Three watchdog periods: a daemon that did not ping would have been restarted.
    sleep 6
    sd_is pgqd NRestarts 0 || fail "pgqd restarted $(sd_show pgqd NRestarts) times while it pings the watchdog"
    local pid
    pid=$(sd_show pgqd MainPID)
    sd systemctl kill --kill-whom=main --signal=SIGSTOP pgqd
    wait_for "the watchdog to restart a stopped pgqd" sd_restarted pgqd
    [ "$(sd_show pgqd MainPID)" != "$pid" ] || fail "same pid after the watchdog restart"
    sd_sh 'rm -r /run/systemd/system/pgqd.service.d && systemctl daemon-reload && systemctl stop pgqd'
    echo "ok: pings keep pgqd running; a stopped pgqd is restarted by the watchdog"
}

# A logfile outside the unit's ReadWritePaths fails to open (read-only file system);
# a drop-in with ReadWritePaths= (the directory), or LogsDirectory=, lets it.
sd_test_paths() {
    step "systemd: a logfile elsewhere, and the drop-ins that allow it"
    sd_sh 'cp /etc/pgqd.ini /etc/pgqd.ini.orig
        sed -i "s|^logfile = .*|logfile = /var/log/pgqd/pgqd.log|" /etc/pgqd.ini
        install -d -o postgres -g postgres /var/log/pgqd'
    if sd systemctl start pgqd 2>/dev/null; then fail "pgqd started with its logfile on a read-only path"; fi
    sd_journal_has pgqd 'cannot open logfile "/var/log/pgqd/pgqd.log": Read-only file system' ||
        fail "no logfile error in the journal: $(sd_journal pgqd | tail -3)"
    echo "ok: a logfile in /var/log/pgqd is refused under ProtectSystem=strict"
    local dropin
    for dropin in "ReadWritePaths=/var/log/pgqd" "LogsDirectory=pgqd"; do
        sd_sh "systemctl stop pgqd; systemctl reset-failed pgqd
            rm -rf /var/log/pgqd; [ $dropin = LogsDirectory=pgqd ] || install -d -o postgres -g postgres /var/log/pgqd
            mkdir -p /etc/systemd/system/pgqd.service.d
            printf '[Service]\n$dropin\n' >/etc/systemd/system/pgqd.service.d/logdir.conf
            systemctl daemon-reload"
        sd systemctl start pgqd || fail "pgqd does not start with $dropin: $(sd_journal pgqd | tail -3)"
        sd grep -q 'pgq version ok\|auto-detecting' /var/log/pgqd/pgqd.log || fail "nothing in the logfile with $dropin"
        echo "ok: with a drop-in $dropin, pgqd logs to /var/log/pgqd/pgqd.log"
    done
    sd_sh 'systemctl stop pgqd; rm -r /etc/systemd/system/pgqd.service.d; mv /etc/pgqd.ini.orig /etc/pgqd.ini
        systemctl daemon-reload'
}

# 3. One pgqd per cluster: pgqd@15-main.service reads /etc/pgqd/15-main.ini.
sd_test_template() {
    step "systemd: the template unit pgqd@15-main"
    sd_sh 'mkdir -p /etc/pgqd
        printf "[pgqd]\nlogfile = /var/log/postgresql/pgqd-15-main.log\npidfile = /var/run/postgresql/pgqd-15-main.pid\n" >/etc/pgqd/15-main.ini'
    sd_is pgqd@15-main UnitFileState disabled || fail "pgqd@.service is $(sd_show pgqd@15-main UnitFileState) after install"
    sd systemctl start pgqd@15-main || fail "systemctl start pgqd@15-main: $(sd_journal pgqd@15-main | tail -3)"
    sd_assert_ticks "pgqd@15-main.service"
    [ "$(sd cat /run/postgresql/pgqd-15-main.pid)" = "$(sd_show pgqd@15-main MainPID)" ] || fail "no pidfile for pgqd@15-main"
    sd systemctl stop pgqd@15-main
    sd_is pgqd@15-main Result success || fail "pgqd@15-main stop result $(sd_show pgqd@15-main Result)"
    echo "ok: pgqd@15-main runs with /etc/pgqd/15-main.ini, stops cleanly"
}

# 4. Debian's pgqd 3.5 installed and running, then our .deb: the swap. 3.5's postrm made
# /etc/init.d/pgqd non-executable (nothing runs it, and our native unit has its name
# anyway); purging 3.5 deletes it, and its postrm disables pgqd.service, the unit name
# both packages share: our trigger (packaging/triggers, postinst) enables it again.
sd_test_swap() {
    step "systemd: Debian's pgqd 3.5 replaced by our .deb, then purged"
    sd systemctl enable --quiet pgqd # as on a machine that runs it
    sd_sh 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgqd </dev/null' \
        >"$TMP/systemd-swap.log" 2>&1 || fail "installing pgqd 3.5: $(tail -5 "$TMP/systemd-swap.log")"
    wait_for "pgqd 3.5 running" sd_is pgqd ActiveState active
    sd_sh 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q /deb/pgqd.deb </dev/null' \
        >>"$TMP/systemd-swap.log" 2>&1 || fail "installing our .deb over 3.5: $(tail -5 "$TMP/systemd-swap.log")"
    sd_is pgqd ActiveState active || fail "pgqd.service is $(sd_show pgqd ActiveState) after the swap"
    sd_is pgqd Type notify || fail "pgqd.service after the swap is not ours"
    wait_for "our STATUS=" sd_status_sent pgqd
    sd_is pgqd UnitFileState enabled || fail "pgqd.service is $(sd_show pgqd UnitFileState) after the swap"
    sd_assert_ticks "our pgqd.service after the swap"
    if sd test -x /etc/init.d/pgqd; then fail "/etc/init.d/pgqd of 3.5 is still executable"; fi
    [ -z "$(sd_show pgqd SourcePath)" ] || fail "pgqd.service comes from $(sd_show pgqd SourcePath)"
    echo "ok: swapped while running; 3.5's /etc/init.d/pgqd left non-executable and unused"
    sd_sh 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q pgqd </dev/null' >>"$TMP/systemd-swap.log" 2>&1
    if sd test -e /etc/init.d/pgqd; then fail "/etc/init.d/pgqd left after purging pgqd 3.5"; fi
    sd_is pgqd ActiveState active || fail "pgqd.service is $(sd_show pgqd ActiveState) after purging 3.5"
    sd_is pgqd UnitFileState enabled || fail "pgqd.service is $(sd_show pgqd UnitFileState) after purging 3.5"
    grep -q "Processing triggers for pgqd-rs" "$TMP/systemd-swap.log" || fail "our trigger did not run"
    echo "ok: purging 3.5 removes /etc/init.d/pgqd; pgqd.service keeps running, enabled (our trigger)"
}

test_systemd() {
    local start=$SECONDS status
    step "systemd: a Debian root with systemd as PID 1"
    make_systemd_image
    sd_test_user_path
    # In a subshell (with its own set -e) so that the container goes whichever way the
    # steps end; then their status is the caller's.
    set +e
    (
        set -e
        sd_boot
        sd_test_script_install
        sd_cluster
        sd_test_unit
        sd_test_watchdog
        sd_test_paths
        sd_test_template
        sd_test_swap
    )
    status=$?
    set -e
    podman rm --force --ignore "$SD_NAME" >/dev/null
    [ "$status" -eq 0 ] || exit "$status"
    echo "ok: systemd tests took $((SECONDS - start)) s"
}
