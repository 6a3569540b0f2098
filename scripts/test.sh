#!/usr/bin/env bash
# Runs the tests, by stage:
#   lint    cargo fmt --check and cargo clippy -D warnings
#   rust    cargo test: real BPF, real HTTPS
#   charts  tests/charts: Helm, Kubernetes schemas, the chart against the
#           injector binary this script builds; tests/scripts: set-up helpers;
#           tests/observability: alert rules under promtool, the dashboard's
#           queries, the report page in headless Chromium (real tracer: root)
#   e2e     tests/e2e: what only podman shows (inject's output under
#           `podman kube play`)
#   cluster tests/cluster: every user flow on a local Kubernetes node
#           (scripts/cluster.sh: built from the Go modules on first use,
#           about 40 min cold; taken down again at the end)
# With no argument, every stage in that order: what CI and the README run.
# rust, e2e and cluster need root (they load BPF programs and run containers).
#
#   ./scripts/test.sh [lint|rust|charts|e2e|cluster]...
#
# Set-up (scripts/setup.sh) runs only when it has not run yet for the
# current setup.sh and tests/requirements.txt; run it by hand to re-check.
set -euo pipefail
cd "$(dirname "$0")/.."

STAGES=(lint rust charts e2e cluster)
for stage in "$@"; do
  case "$stage" in
    lint | rust | charts | e2e | cluster) ;;
    *)
      echo "unknown stage '$stage'; stages: ${STAGES[*]} (none: all of them)" >&2
      exit 2
      ;;
  esac
done
[ $# -gt 0 ] || set -- "${STAGES[@]}"

./scripts/setup.sh --if-needed
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# The path of the binary BIN of package PKG that cargo builds, from cargo's
# own report (it follows CARGO_TARGET_DIR and build.target-dir).
build_bin() {
  cargo build --locked -p "$1" --bin "$2" --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
paths = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m.get("executable")]
assert len(paths) == 1, paths
print(paths[0])'
}

stage_lint() {
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
}

stage_rust() {
  step "cargo test"
  cargo test --workspace --locked
}

stage_charts() {
  step "cargo build -p linnix-injector -p linnix-sidecar"
  LINNIX_INJECTOR_BIN=$(build_bin linnix-injector linnix-injector)
  LINNIX_SIDECAR_BIN=$(build_bin linnix-sidecar linnix-sidecar)
  export LINNIX_INJECTOR_BIN LINNIX_SIDECAR_BIN
  step "pytest tests/charts tests/scripts tests/observability"
  tests/.venv/bin/pytest -v tests/charts tests/scripts tests/observability
}

stage_e2e() {
  step "pytest tests/e2e"
  tests/.venv/bin/pytest -v tests/e2e
}

# The node is taken down whatever the tests did, and `down` must leave
# nothing behind: `leftovers` lists what it finds and fails the stage.
stage_cluster() {
  step "cargo build -p linnix-injector"
  LINNIX_INJECTOR_BIN=$(build_bin linnix-injector linnix-injector)
  export LINNIX_INJECTOR_BIN
  step "scripts/cluster.sh up"
  ./scripts/cluster.sh down >/dev/null 2>&1 || true
  ./scripts/cluster.sh up
  eval "$(./scripts/cluster.sh env)"
  step "pytest tests/cluster"
  local status=0
  tests/.venv/bin/pytest -v tests/cluster || status=$?
  step "scripts/cluster.sh down"
  ./scripts/cluster.sh down
  if ./scripts/cluster.sh leftovers; then
    echo "scripts/cluster.sh down left the above behind" >&2
    status=1
  fi
  return $status
}

for stage in "$@"; do
  started=$SECONDS
  "stage_$stage"
  printf '\n\033[1m==> stage %s: %d s\033[0m\n' "$stage" $((SECONDS - started))
done
