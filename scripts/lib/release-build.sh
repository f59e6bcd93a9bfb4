# shellcheck shell=bash
# scripts/release.sh's builds: the static (musl) binary per architecture, its tarball,
# .deb and .rpm, the CycloneDX SBOM and SHA256SUMS, all into $DIST named with $VERSION.
# Every archive is dated $SOURCE_DATE_EPOCH (the last commit) and owned by root, so the
# same commit gives the same bytes.

rust_target() { echo "$1-unknown-linux-musl"; }
# Debian's and OCI's name for the architecture (RPM's is ours: x86_64, aarch64).
deb_arch() { case $1 in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac; }
static_binary() { echo "target/$(rust_target "$1")/static/pgqd"; }

# The static profile (Cargo.toml: release, symbols stripped), linked by zig against musl.
# Without SOURCE_DATE_EPOCH: ring's build script reruns when it changes, and with it
# everything above ring (every commit would rebuild the TLS stack).
build_static() {
    local arch=$1 started=$SECONDS
    step "static binary for $arch (cargo zigbuild, musl)"
    env -u SOURCE_DATE_EPOCH cargo zigbuild --locked --quiet --profile static --target "$(rust_target "$arch")"
    local bin
    bin=$(static_binary "$arch")
    # No program interpreter: nothing to load, no libc needed on the host.
    if readelf -l "$bin" | grep -q INTERP; then fail "$bin is not statically linked"; fi
    install -m 755 "$bin" "$DIST/pgqd-$VERSION-$arch-linux"
    echo "built in $((SECONDS - started)) s: $(stat -c %s "$bin") bytes"
}

# pgqd-VERSION-ARCH-linux.tar.gz: the binary, man page, units, sample configs, alert
# rules and dashboard, LICENSE, README and CHANGELOG, under one directory.
make_tarball() {
    local arch=$1 name="pgqd-$VERSION-$1-linux"
    step "tarball $name.tar.gz"
    local dir="$STAGE/$name"
    rm -rf "$dir"
    mkdir -p "$dir/systemd" "$dir/config" "$dir/prometheus" "$dir/grafana"
    install -m 755 "$(static_binary "$arch")" "$dir/pgqd"
    install -m 644 packaging/pgqd.1 LICENSE README.md CHANGELOG.md "$dir/"
    install -m 644 config/pgqd.service config/pgqd@.service "$dir/systemd/"
    install -m 644 config/pgqd.ini config/pgqd.toml "$dir/config/"
    install -m 644 config/prometheus/*.yml "$dir/prometheus/"
    install -m 644 docs/grafana/*.json "$dir/grafana/"
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        -C "$STAGE" -cf - "$name" | gzip -9n >"$DIST/$name.tar.gz"
}

# cargo deb from the static binary (no build, already stripped): pgqd-rs_VERSION-1_ARCH.deb.
make_deb() {
    local arch=$1
    step ".deb for $(deb_arch "$arch")"
    cargo deb --locked --quiet --no-build --no-strip --profile static \
        --target "$(rust_target "$arch")" --output "$DIST/" >/dev/null
}

# cargo generate-rpm from the static binary: pgqd-rs-VERSION-1.ARCH.rpm. A gzip payload,
# which every rpm reads (Amazon Linux 2's rpm 4.11 has no zstd).
make_rpm() {
    local arch=$1
    step ".rpm for $arch"
    cargo generate-rpm --profile static --target "$(rust_target "$arch")" --arch "$arch" \
        --payload-compress gzip --source-date "$SOURCE_DATE_EPOCH" --output "$DIST/"
}

# CycloneDX 1.5 JSON of what the binaries link: the crates reached through normal
# dependencies (not dev or build) on the two musl targets, from cargo metadata and
# Cargo.lock's checksums.
make_sbom() {
    step "SBOM pgqd-$VERSION.cdx.json"
    cargo metadata --locked --format-version 1 \
        --filter-platform x86_64-unknown-linux-musl --filter-platform aarch64-unknown-linux-musl |
        python3 scripts/lib/release-sbom.py Cargo.lock "$SOURCE_DATE_EPOCH" >"$DIST/pgqd-$VERSION.cdx.json"
    echo "$(jq '.components | length' "$DIST/pgqd-$VERSION.cdx.json") components"
}

make_sums() {
    step "SHA256SUMS"
    local files
    files=$(cd "$DIST" && find . -maxdepth 1 -type f -printf '%f\n' | sort)
    # shellcheck disable=SC2086 # one name per word: ours have no spaces
    (cd "$DIST" && sha256sum $files >SHA256SUMS.part && mv SHA256SUMS.part SHA256SUMS)
}
