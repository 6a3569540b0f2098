#!/usr/bin/env bash
# Builds the container images with nothing pulled: static binaries in
# FROM scratch images.
#   localhost/linnix-sidecar:<version>   the tracer
#   localhost/linnix-injector:<version>  the webhook
#   localhost/linnix-demo-app:<version>  busybox, for the example pods
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

VERSION=$(./scripts/version.sh)
TARGET=x86_64-unknown-linux-gnu
# glibc static-pie: no libc in the image. An explicit --target keeps build
# scripts and proc-macros dynamically linked. One build per binary: built
# together, cargo would give the tracer's dependencies the injector's
# features as well (more code), and other symbol names than the ones
# sidecar/link-order.txt lists, which scripts/link-order.py takes from the
# tracer built alone (as scripts/benchlib.py builds it).
for package in linnix-sidecar linnix-injector; do
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$TARGET" -p "$package"
done
BIN="target/$TARGET/release"

build() { # name containerfile file...
  local name=$1 containerfile=$2; shift 2
  local ctx; ctx=$(mktemp -d)
  # The release profile keeps the symbol table (sidecar/link-order.txt is
  # made from it); an image needs none.
  local file
  for file in "$@"; do strip -o "$ctx/$(basename "$file")" "$file"; done
  podman build -q --network=none -f "$containerfile" -t "localhost/$name:$VERSION" "$ctx" >/dev/null
  rm -rf "$ctx"
  printf '%-28s %s\n' "localhost/$name:$VERSION" \
    "$(podman image inspect "localhost/$name:$VERSION" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"
}

build linnix-sidecar sidecar/Containerfile "$BIN/linnix-sidecar"
build linnix-injector injector/Containerfile "$BIN/linnix-injector"
BUSYBOX=$(command -v busybox || echo /bin/busybox)
build linnix-demo-app tests/e2e/demo-app.Containerfile "$BUSYBOX"
