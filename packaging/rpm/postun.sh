# shellcheck shell=sh
# %postun of the RPM: $1 is 0 after an erase, 1 or more after an upgrade. systemd rereads
# the units; on an upgrade the running pgqd.service and pgqd@ instances are restarted on
# the new binary (as %systemd_postun_with_restart does; try-restart leaves stopped ones
# stopped).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart pgqd.service 'pgqd@*.service' >/dev/null 2>&1 || :
    fi
fi
