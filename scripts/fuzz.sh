#!/usr/bin/env bash
# Runs one coverage-guided fuzz target (cargo fuzz, libFuzzer, AddressSanitizer)
# for a given time, from the committed seed corpus, and prints the executions
# run and the crashes found. Not part of CI.
#
#   scripts/fuzz.sh TARGET SECONDS     # TARGET: admission | decode | inject_yaml
#
# cargo fuzz needs nightly compiler flags (-Zsanitizer); on the stable
# toolchain RUSTC_BOOTSTRAP=1 enables them. New inputs go to
# target/fuzz-corpus/TARGET (the committed seeds stay as they are), crashes to
# fuzz/artifacts/TARGET/ (ignored by git; reproduce one with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-…`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
TARGET="${1:?usage: scripts/fuzz.sh TARGET SECONDS}"
SECONDS_TO_RUN="${2:?usage: scripts/fuzz.sh TARGET SECONDS}"
case "$TARGET" in admission|decode|inject_yaml) ;; *) echo "unknown target $TARGET" >&2; exit 2;; esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> cargo install cargo-fuzz --locked" >&2
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
NEW="target/fuzz-corpus/$TARGET"
ARTIFACTS="fuzz/artifacts/$TARGET"
mkdir -p "$NEW" "$ARTIFACTS"
LOG="target/fuzz-$TARGET.log"
set +e
cargo fuzz run "$TARGET" "$NEW" "fuzz/corpus/$TARGET" -- \
  -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$ARTIFACTS/" 2>&1 | tee "$LOG" | grep -E '^(#[0-9]+ +(INITED|DONE)|==[0-9]+==ERROR|SUMMARY|thread .* panicked)'
status=${PIPESTATUS[0]}
set -e
execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOG" | grep -o '[0-9]*$' | tail -1)"
crashes="$(find "$ARTIFACTS" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)"
echo "$TARGET: ${execs:-0} executions in ${SECONDS_TO_RUN}s, $crashes crash(es) in $ARTIFACTS (exit $status; log $LOG)"
exit "$status"
