# shellcheck shell=sh
# %post of the RPM (cargo generate-rpm has no systemd macros, so they are written out).
# $1 is 1 on a first install, 2 or more on an upgrade. On a first install pgqd.service is
# enabled, as Debian's package does, but not started: on RHEL the cluster is usually
# initialized after the packages, so `systemctl start pgqd` is the admin's step once
# /etc/pgqd.ini is right. pgqd@.service instances are never enabled by the package.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl enable pgqd.service >/dev/null 2>&1 || :
fi
