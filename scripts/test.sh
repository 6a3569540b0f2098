#!/usr/bin/env bash
# Runs the tests, by stage:
#   lint    cargo fmt --check and cargo clippy -D warnings
#   rust    cargo test: real BPF, real HTTPS
#   charts  tests/charts: Helm, Kubernetes schemas, the chart against the
#           injector binary this script builds
#   e2e     tests/e2e: injected example pods on podman
# With no argument, every stage in that order: what CI and the README run.
# rust and e2e need root (they load BPF programs and run containers).
#
#   ./scripts/test.sh [lint|rust|charts|e2e]...
#
# Set-up (scripts/setup.sh) runs only when it has not run yet for the
# current setup.sh and tests/requirements.txt; run it by hand to re-check.
set -euo pipefail
cd "$(dirname "$0")/.."

STAGES=(lint rust charts e2e)
for stage in "$@"; do
  case "$stage" in
    lint | rust | charts | e2e) ;;
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

# The path of the injector binary cargo builds, from cargo's own report
# (it follows CARGO_TARGET_DIR and build.target-dir).
build_injector() {
  cargo build --locked -p linnix-injector --bin linnix-injector --message-format=json-render-diagnostics |
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
  step "cargo build -p linnix-injector"
  LINNIX_INJECTOR_BIN=$(build_injector)
  export LINNIX_INJECTOR_BIN
  step "pytest tests/charts"
  tests/.venv/bin/pytest -v tests/charts
}

stage_e2e() {
  step "pytest tests/e2e"
  tests/.venv/bin/pytest -v tests/e2e
}

for stage in "$@"; do
  "stage_$stage"
done
