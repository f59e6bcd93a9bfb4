# shellcheck shell=bash
# scripts/release.sh's minimal image (docker/Dockerfile.static): built per architecture
# with podman from a staged context (the static binary, Debian's CA bundle, passwd and
# group), no registry and no emulation, dated $SOURCE_DATE_EPOCH; saved as
# pgqd-VERSION-image-ARCH.tar (`docker load` / `podman load`).

image_tag() { echo "localhost/pgqd:$VERSION-static-$(deb_arch "$1")"; }

stage_image_context() {
    local arch=$1 ctx="$STAGE/image"
    mkdir -p "$ctx"
    install -m 755 "$(static_binary "$arch")" "$ctx/pgqd-$(deb_arch "$arch")"
    install -m 644 /etc/ssl/certs/ca-certificates.crt docker/static/passwd docker/static/group "$ctx/"
}

build_image() {
    local arch=$1 oci
    oci=$(deb_arch "$arch")
    step "minimal image $(image_tag "$arch")"
    stage_image_context "$arch"
    podman build --quiet --format docker --no-cache --platform "linux/$oci" \
        --timestamp "$SOURCE_DATE_EPOCH" --build-context dist="$STAGE/image" \
        -f docker/Dockerfile.static -t "$(image_tag "$arch")" . >/dev/null
    local file="$DIST/pgqd-$VERSION-image-$oci.tar"
    rm -f "$file"
    podman save --quiet --format docker-archive -o "$file" "$(image_tag "$arch")"
    echo "image size: $(podman image inspect --format '{{.Size}}' "$(image_tag "$arch")") bytes" \
        "($(stat -c %s "$file") bytes saved)"
}
