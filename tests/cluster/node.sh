# Starts and stops the local node's processes. Sourced by scripts/cluster.sh.
#
# The node lives in a network namespace of its own, as a kind node lives in
# a container: the API server, kubelet, containerd and kube-proxy run inside
# it, reached from the host over one veth link. Its bridge, pod routes and
# kube-proxy's iptables rules are the namespace's, so the host's network is
# never touched and deleting the namespace removes them all. Mounts and
# cgroups are the host's (the tracer under test needs the host's cgroup
# tree); `down` removes the ones the node made, and only those.

# in_node CMD...: run a command in the node's network namespace. nsenter,
# not `ip netns exec`, which remounts /sys and so hides the cgroup mounts.
in_node() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# start NAME CMD...: one component in the background, in the node's network
# namespace, in a session of its own (so that a stop reaches its children),
# logging to $STATE/logs/NAME.log.
start() {
  local name=$1; shift
  mkdir -p "$STATE/logs"
  setsid nsenter --net="/run/netns/$NETNS" -- "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/run/$name.pid"
}

running() { local pid; pid=$(cat "$STATE/run/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds; on a timeout say
# which component's log to read, and show its end.
wait_for() {
  local what=$1 limit=$2 log=$3; shift 3
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$STATE/logs/$log.log" >&2 || true
      die "$what not ready after ${limit}s; see $STATE/logs/$log.log"
    fi
    running "$log" || { tail -n 20 "$STATE/logs/$log.log" >&2; die "$log exited; see $STATE/logs/$log.log"; }
    sleep 0.5
  done
}

network_up() {
  ip netns add "$NETNS"
  ip link add "$HOST_LINK" type veth peer name "$NODE_LINK" netns "$NETNS"
  ip addr add "$HOST_IP/30" dev "$HOST_LINK"
  ip link set "$HOST_LINK" up
  in_node ip link set lo up
  in_node ip addr add "$NODE_IP/30" dev "$NODE_LINK"
  in_node ip link set "$NODE_LINK" up
  in_node ip route add default via "$HOST_IP"
  # The host reaches pods (Prometheus scrapes them) through the node.
  ip route add "$POD_CIDR" via "$NODE_IP"
  in_node sysctl -qw net.ipv4.ip_forward=1
  # Bridged pod-to-service traffic must pass iptables for kube-proxy.
  in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1
  mkdir -p "$STATE/cni/net.d"
  cat >"$STATE/cni/net.d/10-linnix.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "linnix-node",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

containerd_up() {
  mkdir -p "$STATE/containerd" "$RUN_DIR"
  # CAP_SYS_RESOURCE is bit 24 of the effective set.
  local caps
  caps=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  RESTRICT_OOM_SCORE_ADJ=true
  (((16#$caps >> 24) & 1)) && RESTRICT_OOM_SCORE_ADJ=false
  cat >"$STATE/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$RUN_DIR/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
# Everything under the node's folders: no /opt/containerd, no NRI socket.
[plugins.'io.containerd.internal.v1.opt']
  path = "$STATE/containerd/opt"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = false
  # The kubelet asks for negative OOM scores (-998 for the pause container,
  # -997 for Guaranteed pods), which only CAP_SYS_RESOURCE may set. Where
  # the node runs without it (this project's machines), scores stay at
  # containerd's own or above, as for a rootless node.
  restrict_oom_score_adj = $RESTRICT_OOM_SCORE_ADJ
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = "$(bin_of runc runc)"
    Root = "$RUN_DIR/runc"
    SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$(dirname "$(bin_of cni-plugins bridge)")"]
    conf_dir = "$STATE/cni/net.d"
EOF
  # The shim finds itself and runc on PATH.
  PATH="$(dirname "$(bin_of containerd containerd)"):$(dirname "$(bin_of runc runc)"):$PATH" \
    start containerd "$(bin_of containerd containerd)" --config "$STATE/containerd/config.toml"
  wait_for containerd 30 containerd ctr_node version
}

ctr_node() { "$(bin_of containerd ctr)" --address "$CONTAINERD_SOCK" "$@"; }

# Images go into containerd's k8s.io namespace under the names the charts
# use, labelled pinned so that the kubelet's image GC keeps them.
import_image() { # archive name
  ctr_node -n k8s.io images import --no-unpack=false "$1" >/dev/null
  ctr_node -n k8s.io images label "$2" io.cri-containerd.pinned=pinned >/dev/null
}

etcd_up() {
  start etcd "$(bin_of etcd etcd)" --data-dir "$STATE/etcd" --name linnix-node \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster linnix-node=http://127.0.0.1:2380 --log-level warn
  wait_for etcd 30 etcd in_node curl -sf http://127.0.0.1:2379/health
}

apiserver_up() {
  local pki=$STATE/pki
  start kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$NODE_IP" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --client-ca-file="$pki/ca.crt" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --kubelet-certificate-authority="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --kubelet-preferred-address-types=InternalIP \
    --profiling=false
  wait_for "the API server" 90 kube-apiserver kubectl get --raw /readyz
}

controllers_up() {
  local pki=$STATE/pki
  start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --use-service-account-credentials=true --leader-elect=false \
    --bind-address=127.0.0.1 --service-cluster-ip-range="$SERVICE_CIDR"
  start kube-scheduler "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1
}

# The kernel settings the kubelet sets on every node it starts on
# (setupKernelTunables; protectKernelDefaults only turns a difference into
# an error). They are the host's: `down` puts back what `up` found.
KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

kubelet_up() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  local key
  for key in "${KUBELET_SYSCTLS[@]}"; do
    printf '%s %s\n' "$key" "$(cat "/proc/sys/$key")"
  done >"$STATE/sysctl.before"
  cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host's cgroups are hybrid (v1 controllers, cgroup2 beside them) and
# must stay so; kubelet 1.35+ refuses v1 unless told (KEP-5573).
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
tlsCertFile: $STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
failSwapOn: false
podLogsDir: $STATE/pod-logs
maxPods: $MAX_PODS
serializeImagePulls: false
# Images are imported, never pulled: keep them however full the disk is.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
EOF
  start kubelet "$KUBE_BIN/kubelet" --config="$STATE/kubelet/config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
# The node's conntrack table is the host's; leave its size alone.
conntrack: {maxPerCore: 0}
EOF
  start kube-proxy "$KUBE_BIN/kube-proxy" --config="$STATE/kube-proxy.yaml"
  wait_for "node $NODE_NAME Ready" 120 kubelet \
    kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
}

# Host paths the components use whatever they are told: the shims' socket
# folder, the CNI result cache, the kubelet's device-plugin socket and its
# log links. The ones that were not there before `up` go at `down`; the
# list of those that were is kept beside the builds, which `down` keeps.
HOST_PATHS=(/run/containerd /var/lib/cni /var/lib/kubelet /var/log/containers)
HOST_PATHS_BEFORE=$CLUSTER_CACHE/host-paths-before-up

node_up() {
  [ ! -e "/run/netns/$NETNS" ] || die "a node is already up (or was not taken down): run '$0 down' first"
  mkdir -p "$STATE/run" "$STATE/logs"
  local p
  for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done >"$HOST_PATHS_BEFORE" || true
  local t0=$SECONDS
  say "network namespace $NETNS, node $NODE_IP, pods $POD_CIDR"
  network_up
  make_pki "$STATE/pki"
  local c
  for c in admin controller-manager scheduler kube-proxy kubelet; do
    make_kubeconfig "$STATE/pki" "$c" "$STATE/$c.kubeconfig"
  done
  say "containerd $CONTAINERD_VERSION"
  containerd_up
  import_image "$(bin_of pause pause.tar)" "$PAUSE_IMAGE"
  say "etcd $ETCD_VERSION"
  etcd_up
  say "kube-apiserver $KUBERNETES_VERSION"
  apiserver_up
  say "kube-controller-manager, kube-scheduler"
  controllers_up
  say "kubelet, kube-proxy"
  kubelet_up
  say "node $NODE_NAME Ready after $((SECONDS - t0)) s"
}

# stop NAME: TERM to the component's whole session, KILL after 10 s.
stop() {
  local pid
  pid=$(cat "$STATE/run/$1.pid" 2>/dev/null) || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  local i
  for i in $(seq 20); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$STATE/run/$1.pid"
}

# The cgroups the kubelet made for pods, in every hierarchy, deepest first.
# Only kubepods: the node makes no other cgroup.
node_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$root" ] && find "$root" -depth -type d
  done
  return 0
}

# The mounts the node made: containerd's snapshots, the kubelet's volumes,
# the sandboxes' shm and network namespaces. Deepest first.
node_mounts() {
  awk -v s="$STATE" -v r="$RUN_DIR" '
    index($5, s "/") == 1 || index($5, r "/") == 1 || $5 ~ "^/run/netns/cni-" { print $5 }' \
    /proc/self/mountinfo | sort -r
}

node_down() {
  if [ -S "$CONTAINERD_SOCK" ]; then
    stop kubelet
    # Removing the sandboxes through the CRI stops their containers and
    # releases their addresses (CNI DEL), as a drained node would.
    "$(bin_of cri-tools crictl)" --runtime-endpoint "unix://$CONTAINERD_SOCK" rmp -af >/dev/null 2>&1 || true
  fi
  local c
  for c in kubelet kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
    stop "$c"
  done
  # Whatever a pod left (a container whose shim outlived containerd): kill
  # every process still in a pod cgroup, then the shims.
  local cg
  while read -r cg; do
    [ -f "$cg/cgroup.procs" ] && xargs -r kill -KILL <"$cg/cgroup.procs" 2>/dev/null
  done < <(node_cgroups)
  pkill -KILL -f "^$CLUSTER_CACHE/" 2>/dev/null || true
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
    case $m in /run/netns/cni-*) rm -f "$m" ;; esac
  done < <(node_mounts)
  # A cgroup goes once its processes have; give the last ones a moment.
  local tries
  for tries in $(seq 20); do
    while read -r cg; do rmdir "$cg" 2>/dev/null || true; done < <(node_cgroups)
    [ -z "$(node_cgroups)" ] && break
    sleep 0.5
  done
  [ -z "$(node_cgroups)" ] || warn "cgroups left behind: $(node_cgroups | tr '\n' ' ')"
  local key value
  if [ -f "$STATE/sysctl.before" ]; then
    while read -r key value; do echo "$value" >"/proc/sys/$key"; done <"$STATE/sysctl.before"
  fi
  # The namespace takes the veth pair (and so the host's pod route), the
  # bridge and every iptables rule of kube-proxy and the CNI plugins.
  [ -e "/run/netns/$NETNS" ] && ip netns delete "$NETNS"
  local p
  while read -r p; do rm -rf "$p"; done < <(new_host_paths)
  rm -rf "$STATE" "$RUN_DIR"
}

new_host_paths() {
  local p
  for p in "${HOST_PATHS[@]}"; do
    [ -e "$p" ] && ! grep -qxF "$p" "$HOST_PATHS_BEFORE" 2>/dev/null && echo "$p"
  done
  return 0
}

# What of the node is there, one line each; exit 1 if anything is.
node_leftovers() {
  local found=0
  [ -e "/run/netns/$NETNS" ] && { echo "network namespace $NETNS"; found=1; }
  ip link show "$HOST_LINK" >/dev/null 2>&1 && { echo "link $HOST_LINK"; found=1; }
  pgrep -af "^$CLUSTER_CACHE/" && found=1
  [ -n "$(node_mounts)" ] && { node_mounts | sed 's/^/mount /'; found=1; }
  [ -n "$(node_cgroups)" ] && { node_cgroups | sed 's/^/cgroup /'; found=1; }
  [ -e "$STATE" ] && { echo "state $STATE"; found=1; }
  [ -e "$RUN_DIR" ] && { echo "state $RUN_DIR"; found=1; }
  [ -n "$(new_host_paths)" ] && { new_host_paths | sed 's/^/path /'; found=1; }
  return $((1 - found))
}

node_status() {
  local c
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    if running "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(cat "$STATE/run/$c.pid")"; else printf '%-24s stopped\n' "$c"; fi
  done
  if running kube-apiserver; then
    kubectl get nodes -o wide 2>&1 || true
    echo "KUBECONFIG=$KUBECONFIG"
  fi
  printf 'memory in use by the node: %s MiB\n' "$(node_memory_mib)"
}

# Resident memory of the node's processes and of every pod (the kubepods
# memory cgroup, which charges page cache too).
node_memory_mib() {
  local kb=0 c pid
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    pid=$(cat "$STATE/run/$c.pid" 2>/dev/null) || continue
    kb=$((kb + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  local pods=0
  [ -r /sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes ] && pods=$(cat /sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes)
  [ -r /sys/fs/cgroup/kubepods/memory.current ] && pods=$(cat /sys/fs/cgroup/kubepods/memory.current)
  echo $(((kb * 1024 + pods) / 1048576))
}
