# Versions of the local test node's components: the one place they are set.
# Kubernetes and etcd are pinned by the go.mod beside their mains (kube/,
# etcd/); the rest are built with `go install PACKAGE@VERSION`, which checks
# each against the Go checksum database. Sourced by scripts/cluster.sh.
required() { # go.mod module: the version go.mod requires
  awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print $NF; exit }' "$1"
}
KUBERNETES_VERSION=$(required "$CLUSTER_SRC/kube/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(required "$CLUSTER_SRC/etcd/go.mod" go.etcd.io/etcd/server/v3)
# kubelet >= 1.36 talks to containerd 2.x only.
CONTAINERD_VERSION=v2.4.2
# runc >= 1.5.2 carries the fix for kernels >= 6.17.
RUNC_VERSION=v1.5.3
CNI_PLUGINS_VERSION=v1.10.0
CRI_TOOLS_VERSION=v1.37.0
HELM_VERSION=v4.3.2
# The pause image's tag: the one kubeadm 1.37 and containerd 2.4 default to,
# so that nothing on the node asks a registry for another.
PAUSE_TAG=3.10.2
