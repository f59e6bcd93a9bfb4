# shellcheck shell=bash
# scripts/release.sh's checks of what it built: the packages' metadata and contents, the
# RPM installed into and erased from a throwaway root (its scriptlets run there by a
# static busybox sh), the minimal image's settings against docker/Dockerfile's and the
# image ticking under podman, and SHA256SUMS. The binaries' ticking is in
# release-cluster.sh.

# Fails unless "$2" (a command's output) has a line matching the extended regex $3.
expect_line() { grep -qE "$3" <<<"$2" || fail "$1: no line matching '$3' in: $2"; }

check_deb() {
    local arch=$1 deb
    deb="$DIST/pgqd-rs_${VERSION}-1_$(deb_arch "$1").deb"
    step "checking $(basename "$deb")"
    [ -f "$deb" ] || fail "$deb was not built"
    local info contents conffiles
    info=$(dpkg-deb --info "$deb")
    contents=$(dpkg-deb --contents "$deb")
    conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
    expect_line "$deb" "$info" "^ Architecture: $(deb_arch "$arch")$"
    expect_line "$deb" "$info" "^ Version: $VERSION-1$"
    for field in Provides Conflicts Replaces; do expect_line "$deb" "$info" "^ $field: pgqd$"; done
    expect_line "$deb" "$conffiles" "^/etc/pgqd.ini$"
    for file in usr/bin/pgqd etc/pgqd.ini "(usr/)?lib/systemd/system/pgqd.service" usr/share/man/man1/pgqd.1.gz; do
        expect_line "$deb" "$contents" " \./$file$"
    done
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/pgqd | cmp -s - "$(static_binary "$arch")" ||
        fail "$deb: /usr/bin/pgqd is not the static $arch binary"
    echo "ok: $(deb_arch "$arch") .deb: architecture, version, provides/conflicts/replaces pgqd, conffile, files, the static binary"
}

check_rpm_metadata() {
    local arch=$1 rpm=$2
    local provides configs flags scripts
    provides=$(rpm -qp --provides "$rpm")
    configs=$(rpm -qp --configfiles "$rpm")
    flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm")
    scripts=$(rpm -qp --scripts "$rpm")
    [ "$(rpm -qp --qf '%{ARCH} %{VERSION}-%{RELEASE}' "$rpm")" = "$arch $VERSION-1" ] ||
        fail "$rpm: wrong arch or version: $(rpm -qp --qf '%{ARCH} %{VERSION}-%{RELEASE}' "$rpm")"
    expect_line "$rpm" "$provides" "^pgqd = $VERSION$"
    expect_line "$rpm" "$configs" "^/etc/pgqd.ini$"
    expect_line "$rpm" "$flags" "^cn /etc/pgqd.ini$" # config, noreplace
    for unit in pgqd.service pgqd@.service; do expect_line "$rpm" "$flags" " /usr/lib/systemd/system/$unit$"; done
    expect_line "$rpm" "$flags" "^d /usr/share/man/man1/pgqd.1$"
    expect_line "$rpm" "$scripts" "^postinstall scriptlet"
    expect_line "$rpm" "$scripts" "systemctl enable pgqd.service"
    expect_line "$rpm" "$scripts" "systemctl --no-reload disable pgqd.service"
    expect_line "$rpm" "$scripts" "systemctl daemon-reload"
    expect_line "$rpm" "$scripts" "systemctl try-restart pgqd.service 'pgqd@\*.service'"
}

# Installed into an empty root with a static busybox as /bin/sh, so the scriptlets run
# (no systemd there: they must do nothing and succeed); then the files, `rpm -V`, and an
# erase that keeps the edited /etc/pgqd.ini as .rpmsave.
check_rpm_root() {
    local arch=$1 rpm=$2 root
    root=$(mktemp -d /tmp/pgqd-rpm-root.XXXXXX)
    # shellcheck disable=SC2034 # read by release.sh's cleanup, which removes it on a failure
    RPM_ROOT=$root
    mkdir -p "$root/bin" "$root/dev" && cp /bin/busybox "$root/bin/busybox" && ln -s busybox "$root/bin/sh"
    mknod -m 666 "$root/dev/null" c 1 3
    rpm --root "$root" --initdb
    # --force-debian: Debian's rpm otherwise asks for alien; --ignorearch: aarch64 here.
    rpm --root "$root" --nodeps --force-debian --ignorearch -i "$rpm" 2>"$root/rpm.err" || fail "rpm -i: $(cat "$root/rpm.err")"
    [ ! -s "$root/rpm.err" ] || fail "rpm -i printed: $(cat "$root/rpm.err")"
    for file in usr/bin/pgqd etc/pgqd.ini usr/lib/systemd/system/pgqd.service \
        usr/lib/systemd/system/pgqd@.service usr/share/man/man1/pgqd.1 usr/share/licenses/pgqd-rs/LICENSE; do
        [ -f "$root/$file" ] || fail "$rpm did not install /$file"
    done
    cmp -s "$root/usr/bin/pgqd" "$(static_binary "$arch")" || fail "$rpm: /usr/bin/pgqd is not the static binary"
    rpm --root "$root" -V --nodeps pgqd-rs || fail "rpm -V pgqd-rs found changes right after the install"
    if [ "$arch" = x86_64 ]; then
        "$root/usr/bin/pgqd" --check "$root/etc/pgqd.ini" >/dev/null || fail "pgqd --check rejects the RPM's /etc/pgqd.ini"
    fi
    echo "ticker_period = 2" >>"$root/etc/pgqd.ini"
    rpm --root "$root" --force-debian --nodeps -e pgqd-rs 2>"$root/rpm.err" || fail "rpm -e: $(cat "$root/rpm.err")"
    [ ! -e "$root/usr/bin/pgqd" ] || fail "rpm -e left /usr/bin/pgqd"
    tail -1 "$root/etc/pgqd.ini.rpmsave" | grep -qx "ticker_period = 2" || fail "rpm -e did not keep the edited /etc/pgqd.ini"
    rm -rf "$root"
    # shellcheck disable=SC2034 # (as above)
    RPM_ROOT=
}

check_rpm() {
    local arch=$1 rpm="$DIST/pgqd-rs-$VERSION-1.$1.rpm"
    step "checking $(basename "$rpm")"
    [ -f "$rpm" ] || fail "$rpm was not built"
    check_rpm_metadata "$arch" "$rpm"
    check_rpm_root "$arch" "$rpm"
    echo "ok: $arch .rpm: provides pgqd, /etc/pgqd.ini %config(noreplace), units, man page, scriptlets;" \
        "installed, verified and erased in a throwaway root"
}

# A Dockerfile's $1 instruction with its continuation line, if any.
instruction() { sed -n "/^$1 /{p;/\\\\$/{n;p}}" "$2"; }

# The minimal image keeps docker/Dockerfile's contract: the same USER, EXPOSE,
# STOPSIGNAL, HEALTHCHECK, ENTRYPOINT and CMD lines, and the same baked config file.
check_image_contract() {
    local key
    for key in USER EXPOSE STOPSIGNAL HEALTHCHECK ENTRYPOINT CMD; do
        [ "$(instruction "$key" docker/Dockerfile)" = "$(instruction "$key" docker/Dockerfile.static)" ] ||
            fail "docker/Dockerfile.static's $key differs from docker/Dockerfile's"
    done
    grep -q "^COPY docker/pgqd.ini /etc/pgqd/pgqd.ini$" docker/Dockerfile.static || fail "Dockerfile.static bakes another config"
    local user
    user=$(podman image inspect --format '{{.Config.User}} {{.Config.StopSignal}} {{.Config.Entrypoint}}' "$(image_tag x86_64)")
    [ "$user" = "999:999 SIGINT [pgqd]" ] || fail "image settings: $user"
}

# The amd64 image as docker/Dockerfile's is run in scripts/container-test.sh: read-only,
# no capabilities, no network, the cluster's socket directory mounted; it ticks, its
# health check passes, `podman stop` is a graceful stop with status 0. The arm64 image
# runs the same way through qemu-user, mounted and named as the entry point (no binfmt
# handler is registered on the host).
check_image() {
    local arch=$1 name=pgqd-release-$1 args=() cmd=()
    step "the minimal $(deb_arch "$arch") image ticks"
    if [ "$arch" = aarch64 ]; then
        # A new entry point drops the image's CMD: name the baked config again.
        args=(--platform linux/arm64 -v /usr/bin/qemu-aarch64-static:/usr/bin/qemu:ro
            --entrypoint '["/usr/bin/qemu", "/usr/bin/pgqd"]')
        cmd=(/etc/pgqd/pgqd.ini)
    fi
    podman rm --force --ignore "$name" >/dev/null
    podman run --detach --name "$name" --read-only --cap-drop all --security-opt no-new-privileges \
        --network none --volume "$SOCK:/var/run/postgresql" "${args[@]}" \
        -e PGQD_BASE_CONNSTR="host=/var/run/postgresql port=$PORT user=postgres" \
        -e PGQD_DATABASE_LIST=rtest -e PGQD_TICKER_PERIOD=0.5 \
        "$(image_tag "$arch")" "${cmd[@]}" >/dev/null 2>"$TMP/podman.err" || fail "podman run: $(cat "$TMP/podman.err")"
    assert_ticks "the minimal $(deb_arch "$arch") image"
    if [ "$arch" = x86_64 ]; then
        wait_for "a passing health check" podman healthcheck run "$name"
        echo "ok: its health check passes"
    fi
    podman stop --time 60 "$name" >/dev/null 2>>"$TMP/podman.log"
    local status
    status=$(podman inspect --format '{{.State.ExitCode}}' "$name")
    podman logs "$name" >"$TMP/$name.log" 2>&1
    podman rm --force "$name" >/dev/null 2>>"$TMP/podman.log"
    [ "$status" = 0 ] || fail "the container exited with $status after podman stop: $(tail -5 "$TMP/$name.log")"
    grep -q "Got SIGINT, shutting down" "$TMP/$name.log" || fail "no graceful stop line: $(tail -5 "$TMP/$name.log")"
    echo "ok: podman stop is a graceful stop with status 0"
}

check_sums() {
    step "sha256sum -c SHA256SUMS"
    (cd "$DIST" && sha256sum --check --quiet --strict SHA256SUMS) || fail "SHA256SUMS does not match"
    echo "ok: $(wc -l <"$DIST/SHA256SUMS") files match SHA256SUMS"
}
