"""kubectl and helm as a user runs them, against the local node.

Every call goes through the real binaries that `scripts/cluster.sh` built, so
a test sees what a user sees: the admission warnings kubectl prints on
stderr, the policy's message when a request is denied, `kubectl logs`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
TRACER = "linnix-tracer"
VERSION = subprocess.run([ROOT / "scripts" / "version.sh"], check=True, capture_output=True, text=True).stdout.strip()
# As the chart writes it into pods; containerd stores it as docker.io/….
SIDECAR_IMAGE = f"linnix/linnix-sidecar:{VERSION}"
APP_IMAGE = f"docker.io/linnix/linnix-demo-app:{VERSION}"
RELEASE = "linnix"
RELEASE_NS = "linnix-system"
INJECTOR = f"{RELEASE}-linnix-injector"


class KubeError(AssertionError):
    pass


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def warnings(self) -> list[str]:
        """The admission warnings kubectl printed (`Warning: …` lines)."""
        return [line.removeprefix("Warning: ") for line in self.stderr.splitlines() if line.startswith("Warning: ")]

    def json(self):
        return json.loads(self.stdout)


def run(tool: str, *args: str, input: str | None = None, check: bool = True, timeout: float = 120,
        as_user: str | None = None, groups: Iterable[str] = ()) -> Result:
    argv = [tool, *args]
    if as_user:
        argv += [f"--as={as_user}", *(f"--as-group={g}" for g in groups)]
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=os.environ)
    result = Result(argv, done.returncode, done.stdout, done.stderr)
    if check and done.returncode != 0:
        raise KubeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}{done.stdout[-2000:]}")
    return result


def kubectl(*args: str, **kw) -> Result:
    return run("kubectl", *args, **kw)


def helm(*args: str, **kw) -> Result:
    kw.setdefault("timeout", 300)
    return run("helm", *args, **kw)


def apply(*docs: dict, namespace: str | None = None, verb: str = "apply", **kw) -> Result:
    """`kubectl apply -f -` (or `create`) of the given objects, as YAML."""
    args = [verb, "-f", "-"]
    if namespace:
        args += ["-n", namespace]
    return kubectl(*args, input=yaml.safe_dump_all(docs), **kw)


def get(kind: str, name: str, namespace: str | None = None) -> dict:
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    return kubectl(*args).json()


def eventually(what: str, probe: Callable[[], object], timeout: float = 90, interval: float = 0.5):
    """Poll until `probe` returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except KubeError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f} s; last: {str(last)[:3000]}")
        time.sleep(interval)


def pods(namespace: str, selector: str) -> list[dict]:
    return kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").json()["items"]


def wait_ready(namespace: str, name: str, timeout: float = 120) -> dict:
    def ready():
        pod = get("pod", name, namespace)
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        return pod if conds.get("Ready") == "True" else None
    return eventually(f"pod {namespace}/{name} Ready", ready, timeout)


def tracer_events(namespace: str, pod: str, container: str = TRACER, names: bool = True) -> list[dict]:
    """The tracer's JSON lines from `kubectl logs -c linnix-tracer`.

    A container's first lines carry its id rather than its name: the tracer
    learns names from the pod's status, which the kubelet writes only after
    the container has started (the tracer asks again on the first unknown
    id, at most every 5 s). With `names`, ids are replaced by the names the
    pod's status gives them, so that tests check which container an event
    was attributed to; `names=False` gives the lines as written."""
    out = kubectl("logs", "-n", namespace, pod, "-c", container).stdout
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if not names:
        return events
    ids = {}
    status = get("pod", pod, namespace).get("status", {})
    for s in (status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
              + status.get("ephemeralContainerStatuses", [])):
        for key in ("containerID",):
            if s.get(key):
                ids[s[key].split("://", 1)[1]] = s["name"]
        for previous in (s.get("lastState", {}).get("terminated", {}),):
            if previous.get("containerID"):
                ids[previous["containerID"].split("://", 1)[1]] = s["name"]
    return [{**e, "container": ids.get(e.get("container"), e.get("container"))} for e in events]


def wait_events(namespace: str, pod: str, predicate: Callable[[list[dict]], bool], what: str,
                timeout: float = 60) -> list[dict]:
    return eventually(f"{what} in the tracer's log of {namespace}/{pod}",
                      lambda: (lambda ev: ev if predicate(ev) else None)(tracer_events(namespace, pod)),
                      timeout)


def namespace(name: str, labels: dict | None = None, annotations: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}}}


def pod(name: str, *, script: str = "sleep 3600", annotations: dict | None = None, spec: dict | None = None,
        labels: dict | None = None) -> dict:
    """A pod of the demo image (busybox) running `script` in container `app`."""
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never",
                            "command": ["/bin/sh", "-c", script]}],
        },
    }
    body["spec"].update(spec or {})
    return body


def container_names(pod: dict) -> list[str]:
    spec = pod["spec"]
    return [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]


def injector_metrics_by_pod() -> dict[str, dict[str, float]]:
    """Each running injector replica's /metrics, read through the API
    server's pod proxy (as Prometheus would scrape each replica)."""
    by_pod: dict[str, dict[str, float]] = {}
    for p in kubectl("get", "pods", "-n", RELEASE_NS, "-l", f"app.kubernetes.io/instance={RELEASE}",
                     "-o", "json").json()["items"]:
        if p["status"].get("phase") != "Running" or p["metadata"].get("deletionTimestamp"):
            continue
        name = p["metadata"]["name"]
        text = kubectl("get", "--raw", f"/api/v1/namespaces/{RELEASE_NS}/pods/{name}:9090/proxy/metrics").stdout
        by_pod[name] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                by_pod[name][key] = float(value)
    return by_pod


def injector_metrics() -> dict[str, float]:
    """The injector's counters summed over its replicas."""
    total: dict[str, float] = {}
    for metrics in injector_metrics_by_pod().values():
        for key, value in metrics.items():
            total[key] = total.get(key, 0.0) + value
    return total


def admissions(reason: str, decision: str | None = None) -> float:
    """linnix_injector_admissions_total for one reason (all decisions)."""
    return sum(v for k, v in injector_metrics().items()
               if k.startswith("linnix_injector_admissions_total{") and f'reason="{reason}"' in k
               and (decision is None or f'decision="{decision}"' in k))
