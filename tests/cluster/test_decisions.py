"""Every row of the injection decision table that the API server takes part
in, as a user sees it: what `kubectl create` prints (the admission
warnings), the status annotation on the pod, and the `reason` the injector's
metrics count. Pods are created for real (the injector counts no dry-run),
and go with their namespace at the end.
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from clients import RELEASE_NS, TRACER, admissions, apply, injector_metrics, kubectl, namespace

OPT_IN = {"sidecar.linnix.io/inject": "true"}
PRIVILEGED = {"pod-security.kubernetes.io/enforce": "privileged"}

# name: (labels, annotations) of the namespace a row's pod is created in
NAMESPACES = {
    "opted-in": (PRIVILEGED, OPT_IN),
    "silent": (PRIVILEGED, {}),
    "ns-disabled": (PRIVILEGED, {"sidecar.linnix.io/inject": "false"}),
    "ns-invalid": (PRIVILEGED, {"sidecar.linnix.io/inject": "maybe"}),
    "baseline": ({"pod-security.kubernetes.io/enforce": "baseline"}, OPT_IN),
    "guarded": ({**PRIVILEGED, "sidecar.linnix.io/guard": "baseline"}, OPT_IN),
}


@pytest.fixture(scope="module")
def spaces(injector):
    suffix = uuid.uuid4().hex[:5]
    names = {key: f"dec-{key}-{suffix}" for key in NAMESPACES}
    for key, (labels, annotations) in NAMESPACES.items():
        apply(namespace(names[key], labels, annotations))
    yield names
    for name in names.values():
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def dry_run(ns: str, annotations: dict | None = None, spec: dict | None = None):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "row-", "annotations": annotations or {}},
           "spec": {"containers": [{"name": "app", "image": "busybox", "imagePullPolicy": "Never"}], **(spec or {})}}
    result = kubectl("create", "-o", "json", "-n", ns, "-f", "-", input=yaml.safe_dump(pod))
    return result.json(), result.warnings


def injected(pod: dict) -> bool:
    return any(c["name"] == TRACER for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"])


# row, namespace, pod annotations, pod spec, injected?, status (substring; None: no annotation),
# warning (substring; None: no warning), metric reason
ROWS = [
    ("3", "silent", OPT_IN, {}, True, "injected (linnix-injector", None, "requested"),
    ("4", "opted-in", {"sidecar.linnix.io/inject": "false"}, {}, False, "disabled on the pod", None, "disabled-by-pod"),
    ("5", "opted-in", {"sidecar.linnix.io/inject": "yes-please"}, {}, False, '"yes-please" on the pod is not one of',
     '"yes-please" on the pod is not one of', "invalid-annotation"),
    ("6", "opted-in", {}, {}, True, "injected (linnix-injector", None, "requested"),
    ("6-disabled", "ns-disabled", {}, {}, False, "disabled on the namespace", None, "disabled-by-namespace"),
    ("6-invalid", "ns-invalid", {}, {}, False, '"maybe" on the namespace is not one of',
     '"maybe" on the namespace is not one of', "invalid-annotation"),
    ("6b", "silent", {}, {}, False, "neither the pod nor its namespace sets", None, "not-requested"),
    ("7", "baseline", {}, {}, False, 'namespace enforces Pod Security level "baseline"',
     'namespace enforces Pod Security level "baseline"', "pod-security"),
    ("7a", "guarded", {}, {}, True, "namespace guarded: every other container is held to Pod Security baseline", None,
     "requested"),
    ("8", "opted-in", {}, {"shareProcessNamespace": False}, False, "spec.shareProcessNamespace is explicitly false",
     "spec.shareProcessNamespace is explicitly false", "share-process-namespace-disabled"),
    ("8b", "opted-in", {}, {"hostPID": True}, False, "spec.hostPID is true", "spec.hostPID is true", "host-pid"),
    ("8c", "opted-in", {}, {"os": {"name": "windows"}}, False, "the pod is for Windows", "the pod is for Windows",
     "windows"),
    ("9", "opted-in", {}, {"hostUsers": False}, False, "spec.hostUsers is false", "spec.hostUsers is false",
     "user-namespace"),
]


@pytest.mark.parametrize("row,ns,annotations,spec,inject,status,warning,reason", ROWS, ids=[r[0] for r in ROWS])
def test_decision_row(spaces, row, ns, annotations, spec, inject, status, warning, reason):
    before = admissions(reason)
    pod, warnings = dry_run(spaces[ns], annotations, spec)
    assert injected(pod) == inject
    assert status in pod["metadata"].get("annotations", {}).get("sidecar.linnix.io/status", ""), pod["metadata"]
    ours = [w for w in warnings if "linnix" in w or "sidecar.linnix.io" in w]
    if warning is None:
        assert not [w for w in ours if "Pod Security" not in w and "PodSecurity" not in w], warnings
    else:
        assert any(warning in w for w in warnings), warnings
    assert admissions(reason) >= before + 1, f"reason {reason} not counted"


def test_row_1_an_injected_pod_is_injected_once(spaces):
    first, _ = dry_run(spaces["opted-in"])
    first["metadata"] = {"generateName": "again-", "annotations": first["metadata"]["annotations"]}
    first.pop("status", None)
    for key in ("nodeName",):
        first["spec"].pop(key, None)
    before = admissions("already-injected")
    again = kubectl("create", "-o", "json", "-n", spaces["opted-in"], "-f", "-",
                    input=yaml.safe_dump(first)).json()
    names = [c["name"] for c in again["spec"]["initContainers"] + again["spec"]["containers"]]
    assert names.count(TRACER) == 1
    assert admissions("already-injected") >= before + 1


@pytest.mark.parametrize("ns", ["kube-system", "kube-public", RELEASE_NS])
def test_row_2_protected_namespaces_are_never_sent_to_the_webhook(injector, ns):
    """The chart's namespaceSelector keeps the API server from calling the
    webhook at all: no tracer, no status, no warning, nothing counted."""
    before = _all_admissions()
    pod, warnings = dry_run(ns, OPT_IN)
    assert not injected(pod)
    assert "sidecar.linnix.io/status" not in pod["metadata"].get("annotations", {})
    assert not [w for w in warnings if "linnix" in w], warnings
    assert _all_admissions() == before


def _all_admissions() -> float:
    return sum(v for k, v in injector_metrics().items() if k.startswith("linnix_injector_admissions_total{"))
