#!/usr/bin/env python3
"""Adapt injected Kubernetes Pod YAML to what `podman kube play` (4.3) honours.

The injector writes standard Kubernetes. podman 4.3 differs from a kubelet in
five ways that matter here, and this module translates exactly those, saying
so on stderr:

* It runs no native sidecars: an init container with `restartPolicy: Always`
  would run to completion before the app containers, that is never. Such a
  container becomes a regular one (without the restart policy), started
  beside the app, which waits for its /readyz itself.
* It ignores `securityContext.seccompProfile` but honours the legacy
  per-container annotation `container.seccomp.security.alpha.kubernetes.io/<name>`.
* Its downward API knows only `metadata.name`; `metadata.namespace`,
  `metadata.uid` and `spec.nodeName` are turned into literal values (what the
  kubelet would have put there).
* It publishes every declared `containerPort` on the host, where Kubernetes
  only documents it; two traced pods would both claim 9464. Ports without a
  `hostPort` are dropped (the pod's own network namespace still has them).
* It refuses the whole pod when an annotation value is longer than 63
  characters (it applies the label-value limit; Kubernetes limits only the
  total size of a pod's annotations). Such annotations, like the injector's
  `sidecar.linnix.io/status`, which names the tracer's image, are dropped:
  nothing in the pod reads them.

Usage: podman_compat.py [--namespace NS] [--node NAME] < pod.yaml > play.yaml
"""

from __future__ import annotations

import argparse
import socket
import sys
import uuid

import yaml

SECCOMP_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"
PODMAN_MAX_ANNOTATION_VALUE = 63


def _seccomp_annotation_value(profile: dict) -> str | None:
    kind = profile.get("type")
    if kind == "Unconfined":
        return "unconfined"
    if kind == "RuntimeDefault":
        return "runtime/default"
    if kind == "Localhost" and profile.get("localhostProfile"):
        return "localhost/" + profile["localhostProfile"]
    return None


def adapt_pod(pod: dict, namespace: str, node: str, notes: list[str]) -> dict:
    """Return the pod with podman-4.3 equivalents of what it would ignore."""
    meta = pod.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    for key, value in list(annotations.items()):
        if isinstance(value, str) and len(value) > PODMAN_MAX_ANNOTATION_VALUE:
            del annotations[key]
            notes.append(f"annotation {key} dropped: {len(value)} characters, podman refuses more than 63")
    uid = meta.setdefault("uid", str(uuid.uuid4()))
    literal = {"metadata.namespace": namespace, "metadata.uid": uid, "spec.nodeName": node}
    spec = pod.get("spec", {})
    for container in [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]:
        spec["initContainers"].remove(container)
        del container["restartPolicy"]
        spec.setdefault("containers", []).append(container)
        notes.append(f"{container['name']}: native sidecar -> regular container (podman runs no native sidecars)")
    if "initContainers" in spec and not spec["initContainers"]:
        del spec["initContainers"]
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        name = container["name"]
        profile = (container.get("securityContext") or {}).get("seccompProfile")
        value = _seccomp_annotation_value(profile) if profile else None
        if value:
            annotations[SECCOMP_ANNOTATION + name] = value
            notes.append(f"{name}: seccompProfile {profile['type']} -> annotation {value}")
        ports = container.get("ports", [])
        kept = [p for p in ports if "hostPort" in p]
        if len(kept) != len(ports):
            container["ports"] = kept
            notes.append(f"{name}: containerPorts without hostPort dropped (podman would publish them)")
            if not kept:
                del container["ports"]
        for env in container.get("env", []):
            path = ((env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if path in literal:
                env.pop("valueFrom")
                env["value"] = literal[path]
                notes.append(f"{name}: env {env['name']} from {path} -> literal {literal[path]!r}")
    return pod


def adapt_documents(text: str, namespace: str = "default", node: str | None = None) -> tuple[str, list[str]]:
    node = node or socket.gethostname()
    notes: list[str] = []
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    out = [adapt_pod(d, namespace, node, notes) if d.get("kind") == "Pod" else d for d in docs]
    return yaml.safe_dump_all(out, sort_keys=False), notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--node", default=None)
    args = parser.parse_args()
    text, notes = adapt_documents(sys.stdin.read(), args.namespace, args.node)
    for note in notes:
        print(f"podman-compat: {note}", file=sys.stderr)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
