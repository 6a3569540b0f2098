"""Helpers shared by the chart tests: the values of each certificate mode,
reading rendered objects, and validating them against Kubernetes' schemas.

Helm is Helm's own Go library (helm-python-sdk); objects of core kinds are
validated against the Kubernetes OpenAPI schemas shipped by
kubernetes-validate, in strict mode (unknown fields are errors). cert-manager
kinds (Issuer, Certificate) are not in those schemas; they are checked
structurally against cert-manager.io/v1's required fields instead.
"""

from __future__ import annotations

import base64
import re

import kubernetes_validate

from conftest import RELEASE_NS

# The chart's minimum (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]

CA_PEM_B64 = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
).decode()

MODES = {
    "selfSigned": {},
    "certManager": {"certificates": {"mode": "certManager"}},
    "certManagerIssuerRef": {
        "certificates": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "existingSecret": {
        "certificates": {
            "mode": "existingSecret",
            "existingSecret": {"name": "injector-tls", "caBundle": CA_PEM_B64},
        }
    },
    "nativeSidecarOff": {"sidecar": {"nativeSidecar": False}},
}


def only(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
    return found[0]


def by_name(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """Evaluates a metav1.LabelSelector the way the API server does."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise AssertionError(f"unknown selector operator {op}")
    return True


def flags(args: list[str]) -> dict[str, list[str]]:
    """Splits `--name=value` / `--name` arguments into name -> values."""
    out: dict[str, list[str]] = {}
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, _, value = arg[2:].partition("=")
        out.setdefault(name, []).append(value)
    return out


def injector_container(objects: list[dict]) -> dict:
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def webhook(objects: list[dict]) -> dict:
    hooks = only(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert len(hooks) == 1
    return hooks[0]




def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def check_cert_manager_object(obj: dict) -> None:
    """Structural check of the cert-manager.io/v1 kinds the chart renders.

    kubernetes-validate ships no CRD schemas, so this checks the fields
    cert-manager's v1 CRDs require and the ones this chart depends on.
    """
    assert obj["apiVersion"] == "cert-manager.io/v1"
    meta = obj["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]), meta["name"]
    assert meta["namespace"] == RELEASE_NS
    spec = obj["spec"]
    if obj["kind"] == "Issuer":
        # An Issuer must configure exactly one issuing mechanism.
        mechanisms = {"selfSigned", "ca", "acme", "vault", "venafi"} & spec.keys()
        assert len(mechanisms) == 1, spec
        if "ca" in spec:
            assert spec["ca"]["secretName"]
    elif obj["kind"] == "Certificate":
        # Required by the CRD: secretName and issuerRef.name.
        assert spec["secretName"]
        assert spec["issuerRef"]["name"]
        assert spec["issuerRef"].get("kind", "Issuer") in ("Issuer", "ClusterIssuer")
        assert set(spec) <= {
            "secretName", "issuerRef", "commonName", "dnsNames", "duration",
            "renewBefore", "usages", "privateKey", "isCA", "secretTemplate",
        }, spec.keys()
        for field in ("duration", "renewBefore"):
            if field in spec:
                assert re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms))+", spec[field]), spec[field]
        if "privateKey" in spec:
            assert spec["privateKey"]["algorithm"] in ("RSA", "ECDSA", "Ed25519")
            assert spec["privateKey"].get("rotationPolicy", "Always") in ("Always", "Never")
    else:
        raise AssertionError(f"unexpected cert-manager kind {obj['kind']}")


def validate(obj: dict, version: str) -> None:
    if obj["apiVersion"].startswith("cert-manager.io/"):
        check_cert_manager_object(obj)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
            f"{err.message} at {list(err.absolute_path)}"
        ) from None
