#!/usr/bin/env bash
# Builds pgqd's release artifacts into target/dist/ and checks them. One command:
#
#   scripts/release.sh            everything below, for x86_64 and aarch64, then every check
#   scripts/release.sh --ci       x86_64 only: the static binary and the minimal image,
#                                 both ticking a throwaway cluster (what CI runs)
#   scripts/release.sh --measure  only the musl-vs-glibc comparison (100 databases)
#
# Artifacts (VERSION from Cargo.toml, ARCH x86_64 | aarch64, DEB amd64 | arm64):
#   pgqd-VERSION-ARCH-linux             the static binary (musl, linked by zig)
#   pgqd-VERSION-ARCH-linux.tar.gz      binary, man page, units, sample configs, alert rules,
#                                       dashboard, LICENSE, README, CHANGELOG
#   pgqd-rs_VERSION-1_DEB.deb           cargo deb, from the static binary
#   pgqd-rs-VERSION-1.ARCH.rpm          cargo generate-rpm (packaging/rpm/)
#   pgqd-VERSION-image-DEB.tar          the minimal image (docker/Dockerfile.static)
#   pgqd-VERSION.cdx.json               CycloneDX SBOM of the linked crates
#   SHA256SUMS
# Checks: the x86_64 binary ticks a throwaway cluster (over TLS), the aarch64 one under
# qemu-user; the .debs' metadata and files; the .rpms' provides, config flags, files and
# scriptlets, and each installed into and erased from a throwaway root; the minimal
# images tick under podman (amd64 with its health check); the amd64 .deb swaps Debian's
# pgqd 3.5 out and `apt install pgqd` back in, in a throwaway root; sha256sum -c SHA256SUMS.
# Installs what is missing (scripts/lib/release-tools.sh). Archives are dated by the
# last commit, so the same commit gives the same tarballs, packages and SBOM.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh
. scripts/lib/containers.sh
. scripts/lib/release-tools.sh
. scripts/lib/release-build.sh
. scripts/lib/release-image.sh
. scripts/lib/release-cluster.sh
. scripts/lib/release-check.sh
. scripts/lib/release-measure.sh
. scripts/lib/release-swap.sh

MODE=all
case "${1:-}" in
    "") ;;
    --ci) MODE=ci ;;
    --measure) MODE=measure ;;
    *)
        echo "usage: $0 [--ci | --measure]" >&2
        exit 2
        ;;
esac

START=$SECONDS
step() { echo "== $* ($((SECONDS - START)) s)"; }
fail() {
    echo "FAILED: $*" >&2
    exit 1
}

DIST=target/dist
STAGE=$DIST/.stage
ARCHES=(x86_64 aarch64)
[ "$MODE" = all ] || ARCHES=(x86_64)

cleanup() {
    # Only in our own podman storage (podman_in_cache), never the machine's.
    if [ -n "${CONTAINERS_STORAGE_CONF:-}" ]; then
        podman rm --force --ignore pgqd-release-x86_64 pgqd-release-aarch64 >/dev/null 2>&1 || true
    fi
    stop_release_cluster
    [ -z "${RPM_ROOT:-}" ] || rm -rf "$RPM_ROOT"
}
trap cleanup EXIT

ensure_packages
ensure_release_tools "$MODE"
VERSION=$(cargo metadata --locked --no-deps --format-version 1 | jq -r '.packages[] | select(.name == "pgqd") | .version')
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
if [ "$MODE" = measure ]; then
    measure_musl_vs_glibc
    exit
fi
# FROM scratch needs no base image, so no registry is asked.
podman_in_cache "$RELEASE_CACHE"
rm -rf "$DIST" && mkdir -p "$STAGE"
for arch in "${ARCHES[@]}"; do
    build_static "$arch"
    build_image "$arch"
done
if [ "$MODE" = all ]; then
    for arch in "${ARCHES[@]}"; do
        make_tarball "$arch"
        make_deb "$arch"
        make_rpm "$arch"
    done
    make_sbom
    rm -rf "$STAGE"
    make_sums
fi

start_release_cluster
assert_binary_ticks "the static x86_64 binary" "$(static_binary x86_64)"
check_image_contract
check_image x86_64
if [ "$MODE" = all ]; then
    step "the aarch64 binary under qemu-user"
    assert_binary_ticks "the static aarch64 binary (qemu-aarch64-static)" qemu-aarch64-static "$(static_binary aarch64)"
    check_image aarch64
    for arch in "${ARCHES[@]}"; do
        check_deb "$arch"
        check_rpm "$arch"
    done
    check_deb_swap_rollback
    check_sums
fi
step "release $VERSION ($MODE) built and checked"
ls -l "$DIST"
