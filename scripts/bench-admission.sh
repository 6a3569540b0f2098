#!/usr/bin/env bash
# Admission throughput and latency of `linnix-injector serve`: builds the
# release binary, starts it with certificates from `certs`, and drives
# AdmissionReviews over TLS keep-alive at concurrency 16 with oha, for a
# typical ~3 KB pod and a ~64 KB pod with 1,000 env vars. Prints reviews/s
# and p50/p99. Targets: >= 5,000 reviews/s and p99 <= 2 ms (typical pod),
# p99 <= 5 ms (large pod).
#
#   scripts/bench-admission.sh [DURATION]     # default 10s per payload
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
DURATION="${1:-10s}"
CONCURRENCY=16

if ! command -v oha >/dev/null 2>&1; then
  echo "==> cargo install oha --locked" >&2
  cargo install oha --locked
fi
echo "==> cargo build --release -p linnix-injector" >&2
cargo build --release --locked -p linnix-injector >&2
BIN="${CARGO_TARGET_DIR:-target}/release/linnix-injector"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
METRICS_PORT="$(free_port)"

"$BIN" certs --out "$WORK/certs" --dns localhost 2>/dev/null
KUBECONFIG=/nonexistent RUST_LOG=warn "$BIN" serve \
  --addr "127.0.0.1:$PORT" --metrics-addr "127.0.0.1:$METRICS_PORT" \
  --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
  2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]

def review(pod):
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }

def pod(env):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-7c9d8f6b5d-",
            "labels": {"app": "web", "pod-template-hash": "7c9d8f6b5d", "tier": "frontend"},
            "annotations": {"sidecar.linnix.io/inject": "true", "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7c9d8f6b5d",
                                 "uid": "5b1f2c3d-1111-2222-3333-444455556666", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "containers": [{
                "name": "web", "image": "registry.example.com/team-a/web:1.42.0",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": env,
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                              "limits": {"cpu": "1", "memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}, "periodSeconds": 10},
                "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                                 {"name": "config", "mountPath": "/etc/web"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
                {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
            ],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
            "schedulerName": "default-scheduler", "enableServiceLinks": True, "priority": 0,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        },
    }

typical_env = [{"name": f"SETTING_{i}", "value": f"value-{i}-" + "x" * 40} for i in range(20)]
large_env = [{"name": f"SETTING_{i:04d}", "value": f"value-{i}-" + "x" * 20} for i in range(1000)]
for name, env in [("typical", typical_env), ("large", large_env)]:
    body = json.dumps(review(pod(env)), separators=(",", ":"))
    open(f"{work}/{name}.json", "w").write(body)
    print(f"{name}: {len(body)} bytes", file=sys.stderr)
PY

# Every payload must actually be injected, or the figures mean nothing.
for name in typical large; do
  curl -sf --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' \
    --data-binary "@$WORK/$name.json" "https://localhost:$PORT/mutate" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["response"]; assert r["allowed"] and r.get("patch"), r' \
    || { echo "payload $name was not injected" >&2; exit 1; }
done

# Two loads per payload: as fast as it goes (throughput), and at the target
# rate of 5,000 reviews/s (latency at that rate). oha shares the two cores
# with the server, so at saturation p99 is mostly time spent queued behind it.
printf '\n%-8s %8s %8s %12s %10s %10s %8s\n' payload bytes load reviews/s p50_ms p99_ms ok
for name in typical large; do
  for rate in max 5000; do
    rate_flag=()
    [ "$rate" = max ] || rate_flag=(-q "$rate")
    oha -c "$CONCURRENCY" -z "$DURATION" "${rate_flag[@]}" -m POST -H 'Content-Type: application/json' \
      -D "$WORK/$name.json" --insecure --no-tui --output-format json \
      "https://localhost:$PORT/mutate" >"$WORK/$name.out"
    python3 - "$WORK/$name.out" "$name" "$(stat -c %s "$WORK/$name.json")" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = "yes" if s["successRate"] == 1.0 and set(codes) == {"200"} else f"NO {codes}"
print(f"{sys.argv[2]:<8} {sys.argv[3]:>8} {sys.argv[4]:>8} {s['requestsPerSec']:>12.0f} {p['p50']*1e3:>10.3f} {p['p99']*1e3:>10.3f} {ok:>8}")
PY
  done
done
