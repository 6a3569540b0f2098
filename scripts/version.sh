#!/usr/bin/env bash
# Prints the workspace version ([workspace.package] version in Cargo.toml),
# which tags the images. The one place that reads it: build-images.sh,
# demo.sh and the end-to-end test all ask here.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "no [workspace.package] version in Cargo.toml" >&2; exit 1; }
printf '%s\n' "$version"
