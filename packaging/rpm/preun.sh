# shellcheck shell=sh
# %preun of the RPM: $1 is 0 when the package is erased, 1 or more on an upgrade. On erase
# pgqd.service is disabled and stopped and every pgqd@ instance is stopped, since their
# binary goes away (as %systemd_preun does).
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable pgqd.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop pgqd.service 'pgqd@*.service' >/dev/null 2>&1 || :
    fi
fi
