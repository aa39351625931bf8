#!/usr/bin/env bash
# Stage a tiny build context per image and build the scratch images.
#
#   infra/images.sh [predict] [trainer] [s3s-fs]     (default: all three)
#
# The static binaries must already exist (`make image` builds them first). Each image gets its
# own context under target/infra/ctx/<image> holding only the files its Dockerfile copies, so
# `docker build` never uploads the repository or the target directory.
#
# Environment (defaults in brackets):
#   STATIC_DIR    static release binaries [target/static/x86_64-unknown-linux-gnu/release]
#   S3S_FS_BIN    static s3s-fs binary [target/infra/s3s-fs/bin/s3s-fs]
#   IMAGE_PREFIX  image name prefix [digits-]      IMAGE_TAG  tag [latest]
#   S3_BUCKETS    buckets pre-created in the s3s-fs image, space-separated [digits]
#   CA_BUNDLE     CA certificates copied into the images [/etc/ssl/certs/ca-certificates.crt]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

static_dir=${STATIC_DIR:-target/static/x86_64-unknown-linux-gnu/release}
s3s_fs_bin=${S3S_FS_BIN:-target/infra/s3s-fs/bin/s3s-fs}
prefix=${IMAGE_PREFIX:-digits-}
tag=${IMAGE_TAG:-latest}
buckets=${S3_BUCKETS:-digits}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ctx_root=target/infra/ctx

die() {
    echo "images.sh: $*" >&2
    exit 1
}

need_file() {
    [[ -f $1 ]] || die "$1 is missing ($2)"
}

# A fresh context directory with the passwd/group files every image uses.
new_context() {
    local ctx=$ctx_root/$1
    rm -rf "$ctx"
    mkdir -p "$ctx/etc"
    cp infra/rootfs/etc/passwd infra/rootfs/etc/group "$ctx/etc/"
    printf '%s\n' "$ctx"
}

copy_static() { # copy_static <binary> <context>
    need_file "$1" "build it with 'make image'"
    if ! file -b "$1" | grep -q 'static'; then
        die "$1 is not statically linked; a scratch image cannot run it"
    fi
    cp "$1" "$2/"
}

build() { # build <image> <dockerfile> <context>
    local ref=$prefix$1:$tag old new
    old=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
    echo "images.sh: building $ref from $3 ($(du -sh "$3" | cut -f1) context)"
    DOCKER_BUILDKIT=0 docker build --quiet -t "$ref" -f "$2" "$3" >/dev/null
    new=$(docker image inspect -f '{{.Id}}' "$ref")
    # The image this tag used to name, if nothing else names or uses it now.
    if [[ -n $old && $old != "$new" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
    docker image inspect -f "images.sh: $ref {{.Size}} bytes" "$ref"
}

build_predict() {
    local ctx
    ctx=$(new_context predict)
    need_file "$ca_bundle" "CA certificates of the build host"
    cp "$ca_bundle" "$ctx/ca-certificates.crt"
    copy_static "$static_dir/predict" "$ctx"
    build predict infra/Dockerfile "$ctx"
}

build_trainer() {
    local ctx
    ctx=$(new_context trainer)
    need_file "$ca_bundle" "CA certificates of the build host"
    cp "$ca_bundle" "$ctx/ca-certificates.crt"
    need_file data/digits.csv "the embedded data set"
    cp data/digits.csv "$ctx/"
    # COPY keeps the mode of entries below the source directory, not of the directory itself.
    mkdir -p "$ctx/rootfs/tmp"
    chmod 1777 "$ctx/rootfs/tmp"
    copy_static "$static_dir/trainer" "$ctx"
    build trainer infra/Dockerfile.trainer "$ctx"
}

build_s3s_fs() {
    local ctx bucket
    ctx=$(new_context s3s-fs)
    mkdir -p "$ctx/data"
    for bucket in $buckets; do
        [[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "bad bucket name '$bucket'"
        mkdir -p "$ctx/data/$bucket"
    done
    copy_static "$s3s_fs_bin" "$ctx"
    copy_static "$static_dir/probe" "$ctx"
    build s3s-fs infra/Dockerfile.s3s-fs "$ctx"
}

images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=(predict trainer s3s-fs)
for image in "${images[@]}"; do
    case $image in
        predict) build_predict ;;
        trainer) build_trainer ;;
        s3s-fs) build_s3s_fs ;;
        *) die "unknown image '$image' (predict, trainer, s3s-fs)" ;;
    esac
done
