# Builds the local node's programs from their Go modules, and the pause
# image, into $CLUSTER_CACHE: one folder per component and version, so that
# a build is done once per version and `down` never removes it. Sourced by
# scripts/cluster.sh; every function prints what it builds and how far along
# it is, since a cold build takes most of half an hour on 2 cores.

# One row per component: name, version, the minutes a cold build took on
# 2 cores (shown before it starts), and the function that builds it into $1.
component_table() {
  [ -n "$KUBERNETES_VERSION" ] && [ -n "$ETCD_VERSION" ] || die "no Kubernetes or etcd version in tests/cluster/{kube,etcd}/go.mod"
  cat <<EOF
kubernetes $KUBERNETES_VERSION 25 build_kube
etcd $ETCD_VERSION 3 build_etcd
containerd $CONTAINERD_VERSION 4 build_containerd
runc $RUNC_VERSION 1 build_runc
cni-plugins $CNI_PLUGINS_VERSION 2 build_cni_plugins
cri-tools $CRI_TOOLS_VERSION 1 build_crictl
helm $HELM_VERSION 3 build_helm
pause $PAUSE_TAG 1 build_pause
EOF
}

# The folder of a component's build. Our own modules (kube, etcd) are keyed
# by their sources as well, so that an edit to main.go or go.mod rebuilds.
component_dir() { # name version
  local key=$2
  case $1 in
    kubernetes) key+=-$(cat "$CLUSTER_SRC"/kube/{main.go,go.mod,go.sum} | sha256sum | cut -c1-12) ;;
    etcd) key+=-$(cat "$CLUSTER_SRC"/etcd/{main.go,go.mod,go.sum} | sha256sum | cut -c1-12) ;;
  esac
  printf '%s/%s-%s\n' "$CLUSTER_CACHE" "$1" "$key"
}

build_missing() {
  local rows name version minutes fn dir i=0 total todo=()
  mapfile -t rows < <(component_table)
  total=${#rows[@]}
  for row in "${rows[@]}"; do
    read -r name version minutes fn <<<"$row"
    dir=$(component_dir "$name" "$version")
    [ -f "$dir/.done" ] || todo+=("$row")
  done
  if [ ${#todo[@]} -gt 0 ]; then
    local sum=0
    for row in "${todo[@]}"; do read -r _ _ minutes _ <<<"$row"; sum=$((sum + minutes)); done
    say "building ${#todo[@]} of $total components from their Go modules into $CLUSTER_CACHE (cold, about $sum min on 2 cores; cached afterwards)"
  fi
  for row in "${rows[@]}"; do
    i=$((i + 1))
    read -r name version minutes fn <<<"$row"
    dir=$(component_dir "$name" "$version")
    if [ -f "$dir/.done" ]; then
      continue
    fi
    say "[$i/$total] $name $version (about $minutes min)"
    local started=$SECONDS
    rm -rf "$dir" && mkdir -p "$dir/bin"
    if ! "$fn" "$dir/bin" >"$dir/build.log" 2>&1; then
      tail -n 30 "$dir/build.log" >&2
      die "building $name $version failed; the whole log is $dir/build.log"
    fi
    echo "$((SECONDS - started))" >"$dir/.done"
    say "[$i/$total] $name $version built in $((SECONDS - started)) s"
  done
}

# The path of a built program: bin_of containerd containerd
bin_of() { # component program
  local row name version
  row=$(component_table | awk -v n="$1" '$1 == n')
  read -r name version _ <<<"$row"
  printf '%s/bin/%s\n' "$(component_dir "$name" "$version")" "$2"
}

# go install into $1, with the build flags of hack/lib/golang.sh that matter
# here: no paths of this machine in the binary, no debug info.
go_install() { # bindir package@version [tags]
  GOBIN=$1 CGO_ENABLED=${CGO_ENABLED:-0} go install -trimpath -tags "${3:-}" -ldflags "-s -w ${LDFLAGS:-}" "$2"
}

build_kube() {
  local v=$KUBERNETES_VERSION ldflags=""
  # Without these the components report v0.0.0-master, and the API server's
  # version skew checks treat the kubelet as unknown.
  local key
  for key in gitVersion:$v gitMajor:${v%%.*} gitMinor:$(cut -d. -f2 <<<"$v") gitTreeState:clean; do
    ldflags+=" -X k8s.io/component-base/version.${key%%:*}=${key#*:}"
    ldflags+=" -X k8s.io/client-go/pkg/version.${key%%:*}=${key#*:}"
  done
  ldflags=${ldflags//gitMajor=v/gitMajor=}
  (cd "$CLUSTER_SRC/kube" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$1/kube" .)
  local name
  for name in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl; do
    ln -sf kube "$1/$name"
  done
}

build_etcd() {
  (cd "$CLUSTER_SRC/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$1/etcd" .)
}

build_containerd() {
  local v=$CONTAINERD_VERSION
  LDFLAGS="-X github.com/containerd/containerd/v2/version.Version=$v" \
    go_install "$1" "github.com/containerd/containerd/v2/cmd/containerd@$v" no_btrfs
  go_install "$1" "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$v" no_btrfs
  go_install "$1" "github.com/containerd/containerd/v2/cmd/ctr@$v" no_btrfs
}

build_runc() {
  # seccomp needs cgo and libseccomp: without it runc refuses every
  # container that has a seccomp profile, RuntimeDefault included.
  LDFLAGS="-X main.version=${RUNC_VERSION#v}" CGO_ENABLED=1 \
    go_install "$1" "github.com/opencontainers/runc@$RUNC_VERSION" seccomp
}

build_cni_plugins() {
  local plugin
  for plugin in main/bridge ipam/host-local main/loopback meta/portmap; do
    go_install "$1" "github.com/containernetworking/plugins/plugins/$plugin@$CNI_PLUGINS_VERSION"
  done
}

build_crictl() {
  LDFLAGS="-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
    go_install "$1" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
}

build_helm() {
  LDFLAGS="-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    go_install "$1" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

# pause is Kubernetes' own pause.c, from the kubernetes module: a static
# binary in a FROM scratch image, saved as an archive for `ctr images import`.
build_pause() {
  local src ctx
  src=$(cd "$CLUSTER_SRC/kube" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  ctx=$(mktemp -d)
  gcc -Os -static -Wall -Werror -DVERSION="v$PAUSE_TAG-linnix" -o "$ctx/pause" "$src"
  strip "$ctx/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Containerfile"
  podman build -q --network=none -t "$PAUSE_IMAGE" "$ctx"
  podman save --format docker-archive -o "$1/pause.tar" "$PAUSE_IMAGE"
  rm -rf "$ctx"
}

# Pins tests/cluster/kube to another Kubernetes release: k8s.io/kubernetes
# requires its staging modules at v0.0.0 and replaces them with ./staging,
# which a module that depends on it ignores; each gets a replace to the
# release that matches (v1.X.Y → v0.X.Y), generated from its own go.mod.
update_kube_gomod() { # version
  local v=$1 dir=$CLUSTER_SRC/kube gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || die "k8s.io/kubernetes@$v: no go.mod from the module proxy"
  {
    printf 'module linnix.test/cluster/kube\n\n'
    grep -E '^(go|godebug) ' "$gomod"
    printf '\nrequire k8s.io/kubernetes %s\n\n' "$v"
    printf '// k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces\n'
    printf '// them with ./staging, which a dependent module ignores: pin each to its\n'
    printf '// release. Generated by scripts/cluster.sh gomod.\nreplace (\n'
    awk -v r="v0.${v#v1.}" '$2 == "v0.0.0" && $1 ~ /^k8s.io\// { printf "\t%s => %s %s\n", $1, $1, r }' "$gomod"
    printf ')\n'
  } >"$dir/go.mod"
  (cd "$dir" && go mod tidy)
}
