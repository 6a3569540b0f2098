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
