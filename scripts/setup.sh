#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine (as root) lacks to build, test and
# demo linnix. Idempotent: safe to run again; does only what is missing.
#
#   scripts/setup.sh [--if-needed]
#
# --if-needed returns at once when a run of this same setup.sh, with this
# same tests/requirements.txt, has completed here (tests/.setup-stamp):
# what test.sh and demo.sh use, so that every run does not re-check every
# package.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

VENV=tests/.venv
STAMP=tests/.setup-stamp
fingerprint() { sha256sum scripts/setup.sh tests/requirements.txt; }
if [ "${1:-}" = --if-needed ] && [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$(fingerprint)" ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh must run as root (it installs packages and loads BPF programs)" >&2
  exit 1
fi

# clang builds the BPF object; libclang feeds bindgen; podman + runc run the
# end-to-end pods (catatonit is the pause process `podman kube play` builds
# its infra image from; busybox-static is the example app); bpftrace is the
# benchmark's peer; libbpf1 loads the node benchmark's empty programs;
# python3-venv holds the schema and chart checks; prometheus gives promtool,
# which checks and unit-tests the alert rules and parses the dashboard's
# queries; chromium loads the report page headless in its test. The local
# Kubernetes node (scripts/cluster.sh) builds runc with libseccomp-dev, and
# its kube-proxy and CNI plugins program iptables (in the node's own network
# namespace).
APT_PACKAGES=(clang libclang-dev llvm linux-libc-dev podman runc catatonit uidmap busybox-static bpftrace libbpf1 python3 python3-venv python3-pip
  iproute2 procps util-linux curl ca-certificates openssl git prometheus chromium libseccomp-dev iptables conntrack gcc libc6-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# podman on this kind of host: crun refuses hybrid cgroups, and the default
# ulimits cannot be applied inside the sandbox. Only those two keys are set;
# the rest of the file is kept.
python3 scripts/containers_conf.py /etc/containers/containers.conf

if ! command -v cargo >/dev/null 2>&1; then
  for d in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH" && break
  done
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust >= 1.95) is required and was not found" >&2; exit 1; }
# Go builds the local Kubernetes node from its modules (tests/cluster).
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || { echo "go (>= 1.26) is required for scripts/cluster.sh and was not found" >&2; exit 1; }

# Python tools for the Kubernetes schema and Helm chart checks, and the node
# benchmark's plot; installed again when tests/requirements.txt (or this
# script) changed since the stamp.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import kubernetes_validate, helm_python, pytest, yaml, cel_expr_python, matplotlib' 2>/dev/null \
  || [ "$(cat "$STAMP" 2>/dev/null)" != "$(fingerprint)" ]; then
  log "python venv $VENV (tests/requirements.txt)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
fi
fingerprint > "$STAMP"
log "set-up complete"
