#!/usr/bin/env bash
# A single-node Kubernetes cluster on this machine, built from the Go
# modules of its components (nothing is pulled: no registry is reachable),
# for the tests, the demo and the benchmarks. Modelled on
# hack/local-up-cluster.sh; the node runs in a network namespace of its own,
# as a kind node runs in a container. Run as root.
#
#   scripts/cluster.sh build    build what is missing (cached by version)
#   scripts/cluster.sh up       build, start the node, import linnix's images
#   scripts/cluster.sh down     stop it and remove everything it made
#   scripts/cluster.sh images   rebuild linnix's images and import them again
#   scripts/cluster.sh status   what runs, the node, its memory in use
#   scripts/cluster.sh leftovers  what of a node is still here (exit 1 if any)
#   scripts/cluster.sh env      the variables to talk to it (eval "$(...)")
#   scripts/cluster.sh gomod V  pin tests/cluster/kube to Kubernetes V (v1.X.Y)
#
# Builds are cached in $LINNIX_CLUSTER_CACHE (default /var/cache/linnix-cluster),
# one folder per component and version; `down` keeps them. The admin
# kubeconfig is $LINNIX_CLUSTER_STATE/admin.kubeconfig (default
# /var/lib/linnix-cluster): `eval "$(scripts/cluster.sh env)"` points
# kubectl and helm at it. Versions: tests/cluster/versions.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER_SRC=$PWD/tests/cluster
CLUSTER_CACHE=${LINNIX_CLUSTER_CACHE:-/var/cache/linnix-cluster}
STATE=${LINNIX_CLUSTER_STATE:-/var/lib/linnix-cluster}
RUN_DIR=/run/linnix-cluster
CONTAINERD_SOCK=$RUN_DIR/containerd.sock
NETNS=linnix-node
NODE_NAME=linnix-node
HOST_LINK=linnix-host
NODE_LINK=linnix-node
# The link between host and node, pods and services: ranges no Debian
# default uses (podman takes 10.88.0.0/16), all inside the namespace but
# the /30 link and the host's route to the pods.
HOST_IP=10.213.0.1
NODE_IP=10.213.0.2
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
KUBERNETES_SERVICE_IP=10.96.0.1
MAX_PODS=${LINNIX_CLUSTER_MAX_PODS:-110}
PAUSE_IMAGE=registry.k8s.io/pause:$(sed -n 's/^PAUSE_TAG=//p' tests/cluster/versions.sh)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../tests/cluster/versions.sh
. tests/cluster/versions.sh
# shellcheck source=../tests/cluster/build.sh
. tests/cluster/build.sh
# shellcheck source=../tests/cluster/pki.sh
. tests/cluster/pki.sh
# shellcheck source=../tests/cluster/node.sh
. tests/cluster/node.sh
# shellcheck source=../tests/cluster/images.sh
. tests/cluster/images.sh

KUBE_BIN=$(dirname "$(bin_of kubernetes kube)")
export KUBECONFIG=$STATE/admin.kubeconfig
export PATH=$KUBE_BIN:$(dirname "$(bin_of helm helm)"):$(dirname "$(bin_of cri-tools crictl)"):$PATH

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root: the node starts containers and makes cgroups"; }

# A node that fails half way up is taken down again: `up` either leaves a
# Ready node or nothing.
cmd_up() {
  need_root
  local t0=$SECONDS
  build_missing
  local built=$SECONDS
  trap 'status=$?; if [ $status -ne 0 ]; then warn "up failed: taking the node down"; node_down; fi' EXIT
  node_up
  import_linnix_images
  trap - EXIT
  say "up in $((SECONDS - t0)) s (builds $((built - t0)) s); node memory in use: $(node_memory_mib) MiB"
  say "eval \"\$($0 env)\"   # then kubectl, helm, crictl talk to this node"
}

cmd_env() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG"
  printf 'export PATH=%q:$PATH\n' "$KUBE_BIN:$(dirname "$(bin_of helm helm)"):$(dirname "$(bin_of cri-tools crictl)")"
  printf 'export CONTAINER_RUNTIME_ENDPOINT=%q\n' "unix://$CONTAINERD_SOCK"
}

case ${1:-} in
  build) need_root; build_missing ;;
  up) cmd_up ;;
  down) need_root; node_down; say "node down" ;;
  images) need_root; import_linnix_images ;;
  status) node_status ;;
  leftovers) node_leftovers ;;
  env) cmd_env ;;
  gomod) [ -n "${2:-}" ] || die "gomod needs a version, such as $KUBERNETES_VERSION"; update_kube_gomod "$2" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
