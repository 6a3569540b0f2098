# linnix's images on the local node: built with scripts/build-images.sh
# (FROM scratch, nothing pulled) and imported into containerd under the
# names the charts use by default, so that a plain `helm install` of each
# chart runs on this node as on any cluster. Sourced by scripts/cluster.sh.

# The images, as podman names them and as a cluster pulls them.
linnix_images() {
  local v
  v=$(./scripts/version.sh)
  printf '%s %s\n' \
    "localhost/linnix-sidecar:$v" "docker.io/linnix/linnix-sidecar:$v" \
    "localhost/linnix-injector:$v" "docker.io/linnix/linnix-injector:$v" \
    "localhost/linnix-demo-app:$v" "docker.io/linnix/linnix-demo-app:$v"
}

import_linnix_images() {
  say "linnix images (scripts/build-images.sh), imported into the node"
  ./scripts/build-images.sh >&2
  local tmp local_name name
  tmp=$(mktemp -d)
  while read -r local_name name; do
    podman tag "$local_name" "$name"
    podman save --format docker-archive -o "$tmp/image.tar" "$name" >/dev/null
    import_image "$tmp/image.tar" "$name"
    rm -f "$tmp/image.tar"
    printf '  %s\n' "$name" >&2
  done < <(linnix_images)
  rmdir "$tmp"
}
