#!/usr/bin/env bash
# The demo without Kubernetes: podman runs the injected pod. As root:
#   1. set up and build the images (tracer, webhook, example app);
#   2. inject the example pod (tests/e2e/app-pod.yaml) with `linnix-injector inject`;
#   3. run it with `podman kube play` and stream the tracer's events: the app's
#      births, an exit with code 3 and an OOM kill;
#   4. clean up, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --if-needed
export PATH="$HOME/.cargo/bin:$PATH"

VERSION=$(./scripts/version.sh)
POD=linnix-demo
WORK=$(mktemp -d)
say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

cleanup() {
  podman kube down "$WORK/play.yaml" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say "building images (static binaries, FROM scratch)"
./scripts/build-images.sh

say "injecting tests/e2e/app-pod.yaml"
podman run --rm -i --network=none \
  -v "$PWD/tests/e2e/injector-config.yaml:/etc/linnix/config.yaml:ro" \
  "localhost/linnix-injector:$VERSION" inject -f - --config /etc/linnix/config.yaml \
  < tests/e2e/app-pod.yaml > "$WORK/injected.yaml"
sed 's/^/    /' "$WORK/injected.yaml" >&2

say "adapting for podman 4.3 (seccomp annotation, downward API literals)"
tests/.venv/bin/python tests/e2e/podman_compat.py < "$WORK/injected.yaml" > "$WORK/play.yaml"

say "podman kube play; events from the tracer (kubectl logs -c linnix-tracer on Kubernetes):"
podman kube down "$WORK/play.yaml" >/dev/null 2>&1 || true
# From $WORK: conmon stays in podman's folder and writes a file `oom` there
# when a container is OOM-killed, as the demo's app is.
(cd "$WORK" && podman kube play play.yaml >/dev/null)
podman logs -f "$POD-linnix-tracer" &
LOGS=$!
while [ "$(podman inspect "$POD-app" --format '{{.State.Status}}' 2>/dev/null)" = running ]; do sleep 0.5; done
sleep 1
kill "$LOGS" 2>/dev/null || true
wait "$LOGS" 2>/dev/null || true

say "the app's own output"
podman logs "$POD-app" >&2
say "the tracer's metrics (GET :9464/metrics in the pod's network namespace)"
TRACER_PID=$(podman inspect "$POD-linnix-tracer" --format '{{.State.Pid}}')
nsenter -t "$TRACER_PID" -n curl -fsS http://127.0.0.1:9464/metrics | grep -E '^linnix_' >&2 || true
say "done; cleaning up"
