# shellcheck shell=bash
# scripts/release.sh's tools: what it installs when missing (rustup's musl targets,
# cargo-zigbuild and zig from PyPI in a venv, cargo-deb, cargo-generate-rpm, and Debian's
# rpm, qemu-user-static, busybox-static, podman and runc), and podman with storage of
# its own.
# Every version is pinned, so a rebuild links with the same zig and packs with the same
# tools. Sets RELEASE_CACHE and puts the venv on PATH.

RELEASE_CACHE=${PGQD_RELEASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgqd-release}
ZIGBUILD_VERSION=0.24.1
ZIG_VERSION=0.14.1
CARGO_DEB_VERSION=3.8.0
GENERATE_RPM_VERSION=0.21.1

# $1: "all" (both architectures, packages, image) or "ci" (x86_64 binary and image only).
ensure_release_tools() {
    local scope=$1 missing=() targets=(x86_64-unknown-linux-musl)
    [ "$scope" = ci ] || targets+=(aarch64-unknown-linux-musl)
    local installed
    installed=$(rustup target list --installed)
    for target in "${targets[@]}"; do
        grep -qx "$target" <<<"$installed" || rustup target add "$target"
    done
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v setpriv >/dev/null || missing+=(util-linux)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v jq >/dev/null || missing+=(jq)
    command -v readelf >/dev/null || missing+=(binutils)
    [ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    if [ "$scope" != ci ]; then
        command -v rpm >/dev/null || missing+=(rpm)
        command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
        [ -x /bin/busybox ] || missing+=(busybox-static)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
    if [ ! -x "$RELEASE_CACHE/venv/bin/cargo-zigbuild" ] ||
        ! "$RELEASE_CACHE/venv/bin/pip" show ziglang 2>/dev/null | grep -qx "Version: $ZIG_VERSION"; then
        python3 -m venv "$RELEASE_CACHE/venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$RELEASE_CACHE/venv"; }
        "$RELEASE_CACHE/venv/bin/pip" install --quiet "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIG_VERSION"
    fi
    export PATH="$RELEASE_CACHE/venv/bin:$PATH"
    [ "$scope" = ci ] && return
    command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
    command -v cargo-generate-rpm >/dev/null ||
        cargo install cargo-generate-rpm --locked --version "$GENERATE_RPM_VERSION"
}
