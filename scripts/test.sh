#!/usr/bin/env bash
# Runs every test: formatting, lints, the Rust tests (real BPF, real HTTPS) and
# the tests under tests/ (Kubernetes schemas, Helm chart, end-to-end pods on
# podman). Needs root: it loads BPF programs and runs containers.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"
cargo test --workspace --locked
step "pytest tests/"
tests/.venv/bin/pytest -v tests/
