"""The local node and what every cluster test stands on: the injector chart
installed with Helm, and namespaces made and removed per test.

`scripts/test.sh cluster` starts the node (`scripts/cluster.sh up`), points
KUBECONFIG and PATH at it, runs these tests and takes the node down. A test
run against no node fails at once and says how to start one.
"""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest
import yaml

from clients import INJECTOR, RELEASE, RELEASE_NS, ROOT, TRACER, KubeError, apply, eventually, helm, kubectl, namespace



@pytest.fixture(scope="session")
def node():
    try:
        nodes = kubectl("get", "nodes", "-o", "json", timeout=20).json()["items"]
    except (KubeError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"no local node: run `scripts/cluster.sh up` and "
                    f"`eval \"$(scripts/cluster.sh env)\"` first ({e})", pytrace=False)
    ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])]
    assert ready, f"no Ready node: {[n['metadata']['name'] for n in nodes]}"
    return ready[0]["metadata"]["name"]


def install_injector(*extra: str) -> None:
    helm("upgrade", "--install", RELEASE, str(ROOT / "charts" / "linnix-injector"), "-n", RELEASE_NS,
         "--create-namespace", "--wait", "--timeout", "180s", *extra)
    wait_webhook_serving()


def wait_webhook_serving() -> None:
    """Until the API server's calls reach the webhook: a dry-run pod in a
    namespace that asks for injection comes back injected."""
    probe_ns = "linnix-probe"
    if kubectl("get", "namespace", probe_ns, check=False).returncode != 0:
        apply(namespace(probe_ns, annotations={"sidecar.linnix.io/inject": "true"}))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
           "spec": {"containers": [{"name": "app", "image": "x", "imagePullPolicy": "Never"}]}}

    def injected():
        out = kubectl("create", "--dry-run=server", "-o", "json", "-n", probe_ns, "-f", "-",
                      input=yaml.safe_dump(pod)).json()
        return any(c["name"] == TRACER for c in out["spec"].get("initContainers", []))
    eventually("the API server's calls reach the webhook", injected, timeout=120, interval=1)


@pytest.fixture(scope="session")
def injector(node):
    """The injector chart as a user installs it: defaults, self-signed."""
    install_injector()
    return {"release": RELEASE, "namespace": RELEASE_NS, "name": INJECTOR}


@pytest.fixture
def team(request, injector):
    """A namespace for one test, opted in and (by default) guarded as the
    README's install section sets it up, with the namespace chart installed.
    Parametrise with `indirect` and a dict to change labels/annotations."""
    opts = getattr(request, "param", {}) or {}
    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:5]
    labels = {"pod-security.kubernetes.io/enforce": "privileged",
              "pod-security.kubernetes.io/warn": "baseline",
              "pod-security.kubernetes.io/audit": "baseline"}
    if opts.get("guarded", True):
        labels["sidecar.linnix.io/guard"] = "baseline"
    labels.update(opts.get("labels", {}))
    annotations = {"sidecar.linnix.io/inject": "true"}
    annotations.update(opts.get("annotations", {}))
    apply(namespace(name, {k: v for k, v in labels.items() if v is not None},
                    {k: v for k, v in annotations.items() if v is not None}))
    eventually(f"service account default in {name}", lambda: kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0)
    if opts.get("grants", True):
        helm("install", "linnix-tracer", str(ROOT / "charts" / "linnix-namespace"), "-n", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
