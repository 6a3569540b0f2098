#!/usr/bin/env bash
# The product as a user meets it, on a local Kubernetes node, as root:
#   1. the node (scripts/cluster.sh up: built from the Go modules the first
#      time, which it announces with its duration; reused when already up);
#   2. helm install of the injector; a namespace guarded and opted in with
#      kubectl label / annotate, the team's chart installed in it;
#   3. a Deployment, whose pod gets the tracer; `kubectl logs -c
#      linnix-tracer -f` streams its births and exits; a `kubectl exec`
#      shows as entered; a pod OOM-killed at its limit;
#   4. the tracer's metrics.
# The node stays up to look around; `scripts/cluster.sh down` removes it.
# `scripts/demo-podman.sh` is the same story without Kubernetes.
#
#   ./scripts/demo.sh [--down]     --down: take the node down at the end
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --if-needed
export PATH="$HOME/.cargo/bin:$PATH"

NS=demo
say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
show() { printf '\033[2m$ %s\033[0m\n' "$*" >&2; "$@"; }

if ! ./scripts/cluster.sh status 2>/dev/null | grep -q "kube-apiserver *running"; then
  say "starting the local node (scripts/cluster.sh up)"
  ./scripts/cluster.sh up
fi
eval "$(./scripts/cluster.sh env)"
[ "${1:-}" = --down ] && trap './scripts/cluster.sh down' EXIT

say "installing the injector"
show helm upgrade --install linnix charts/linnix-injector --namespace linnix-system --create-namespace --wait >/dev/null
kubectl delete namespace "$NS" --ignore-not-found --wait >/dev/null

say "a team's namespace: guarded, then opted in"
show kubectl create namespace "$NS" >/dev/null
show kubectl label namespace "$NS" sidecar.linnix.io/guard=baseline pod-security.kubernetes.io/enforce=privileged \
  pod-security.kubernetes.io/warn=baseline pod-security.kubernetes.io/audit=baseline --overwrite >/dev/null
show kubectl annotate namespace "$NS" sidecar.linnix.io/inject=true >/dev/null
show helm install linnix-tracer charts/linnix-namespace --namespace "$NS" >/dev/null

say "a Deployment (busybox: a few commands, one exits with code 3)"
VERSION=$(./scripts/version.sh)
kubectl apply -n "$NS" -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: docker.io/linnix/linnix-demo-app:$VERSION
          imagePullPolicy: Never
          command: ["/bin/sh", "-c"]
          args:
            - |
              /bin/uname -a
              /bin/ls / > /dev/null
              sh -c 'exit 3'
              while true; do sleep 5; /bin/date > /tmp/now; done
EOF
show kubectl rollout status -n "$NS" deployment/web --timeout=120s >&2
POD=$(kubectl get pods -n "$NS" -l app=web -o jsonpath='{.items[0].metadata.name}')
show kubectl get pod -n "$NS" "$POD" -o jsonpath='{.metadata.annotations.sidecar\.linnix\.io/status}{"\n"}' >&2

say "kubectl logs -n $NS $POD -c linnix-tracer -f"
kubectl logs -n "$NS" "$POD" -c linnix-tracer -f &
LOGS=$!
sleep 3
say "kubectl exec (shows as entered)"
show kubectl exec -n "$NS" "$POD" -- /bin/cat /etc/hostname >/dev/null
sleep 2
kill "$LOGS" 2>/dev/null || true
wait "$LOGS" 2>/dev/null || true

say "a pod OOM-killed at its 64 MiB limit: memory_pressure, oom_kill, container_exit"
kubectl apply -n "$NS" -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
    - name: app
      image: docker.io/linnix/linnix-demo-app:$VERSION
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=200M count=1"]
      resources: {limits: {memory: 64Mi, cpu: 500m}, requests: {memory: 32Mi, cpu: 50m}}
EOF
for _ in $(seq 120); do
  kubectl logs -n "$NS" hog -c linnix-tracer 2>/dev/null | grep -q '"container_exit"' && break
  sleep 1
done
kubectl logs -n "$NS" hog -c linnix-tracer | grep -E '"event":"(memory_pressure|oom_kill|container_exit)"' >&2 || true
show kubectl get events -n "$NS" --field-selector involvedObject.name=hog,reason=OOMKilled >&2

say "the tracer's metrics (through the API server's pod proxy)"
kubectl get --raw "/api/v1/namespaces/$NS/pods/$POD:9464/proxy/metrics" | grep -E '^linnix_(events|exits|build)' >&2 || true

say "where to look"
cat >&2 <<EOF
  kubectl -n $NS logs $POD -c linnix-tracer -f          # every birth and exit, as JSON lines
  kubectl get --raw /api/v1/namespaces/$NS/pods/$POD:9464/proxy/metrics
  linnix-injector check $POD -n $NS                      # why it is traced
  eval "\$(scripts/cluster.sh env)"                       # kubectl and helm for this node
  scripts/cluster.sh down                                # remove the node
EOF
