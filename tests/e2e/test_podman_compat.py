"""The podman 4.3 translation used by the end-to-end test and the demo."""

import yaml

from podman_compat import adapt_documents

POD = """
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: linnix-tracer
    image: x
    securityContext: {seccompProfile: {type: Unconfined}}
    ports: [{name: linnix-metrics, containerPort: 9464}]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
  - name: app
    image: y
    securityContext: {seccompProfile: {type: RuntimeDefault}}
---
apiVersion: v1
kind: Service
metadata: {name: s}
"""


def test_seccomp_profiles_become_legacy_annotations_and_fieldrefs_literals():
    text, notes = adapt_documents(POD, namespace="team-a", node="node-1")
    pod, service = yaml.safe_load_all(text)
    annotations = pod["metadata"]["annotations"]
    assert annotations["container.seccomp.security.alpha.kubernetes.io/linnix-tracer"] == "unconfined"
    assert annotations["container.seccomp.security.alpha.kubernetes.io/app"] == "runtime/default"
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # podman knows it
    assert env["POD_NAMESPACE"] == {"name": "POD_NAMESPACE", "value": "team-a"}
    assert env["NODE_NAME"] == {"name": "NODE_NAME", "value": "node-1"}
    assert service == {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    assert "ports" not in pod["spec"]["containers"][0]
    assert len(notes) == 5


def test_annotation_values_podman_refuses_are_dropped():
    status = "injected (linnix-injector 0.1.0, tracer 0.1.0, image localhost/linnix-sidecar:0.1.0)"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"sidecar.linnix.io/status": status, "short": "x" * 63}},
        "spec": {"containers": [{"name": "app", "image": "y"}]},
    }
    text, notes = adapt_documents(yaml.safe_dump(pod))
    (out,) = yaml.safe_load_all(text)
    assert out["metadata"]["annotations"] == {"short": "x" * 63}
    assert notes == [f"annotation sidecar.linnix.io/status dropped: {len(status)} characters, podman refuses more than 63"]


def test_a_native_sidecar_becomes_a_regular_container():
    native = """
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers:
  - {name: setup, image: s}
  - {name: linnix-tracer, image: x, restartPolicy: Always}
  containers:
  - {name: app, image: y}
"""
    text, notes = adapt_documents(native, namespace="team-a", node="node-1")
    pod = yaml.safe_load(text)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["setup"]
    assert pod["spec"]["containers"][-1] == {"name": "linnix-tracer", "image": "x"}
    assert any("native sidecar -> regular container" in n for n in notes), notes
