"""Guarded namespaces under the real PodSecurity admission and the real
ValidatingAdmissionPolicy evaluation of the API server: Kubernetes' own
baseline fixtures, created with injection, and the tampering a team would
try, each refused with the policy's message.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import pytest
import requests
import yaml

from clients import APP_IMAGE, SIDECAR_IMAGE, TRACER, apply, eventually, get, kubectl, pod, wait_ready

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pod-security" / "baseline-v1.37"
DENIED = "denied request"


def fixture(path: Path, annotations: dict | None = None) -> dict:
    doc = yaml.safe_load(path.read_text())
    name = doc["metadata"]["name"].replace("_", "-")
    doc["metadata"] = {"generateName": name + "-",
                       "annotations": {**doc["metadata"].get("annotations", {}), **(annotations or {})}}
    return doc


def refused_by_validation(ns: str, path: Path) -> str | None:
    """The API server's own validation error for the fixture as it is, not
    injected (some fixtures are invalid on 1.37 whatever admits them, such
    as procMount Unmasked without a user namespace)."""
    result = create(ns, fixture(path, {"sidecar.linnix.io/inject": "false"}))
    return result.stderr if result.returncode != 0 and " is invalid" in result.stderr else None


def create(ns: str, obj: dict, dry_run: bool = True):
    args = ["create", "-n", ns, "-f", "-", "-o", "json"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    return kubectl(*args, input=yaml.safe_dump(obj), check=False)


@pytest.mark.parametrize("path", sorted((FIXTURES / "pass").glob("*.yaml")), ids=lambda p: p.stem)
def test_baseline_pass_fixtures_are_admitted_and_injected(team, path):
    result = create(team, fixture(path))
    assert result.returncode == 0, result.stderr
    out = result.json()
    names = [c["name"] for c in out["spec"].get("initContainers", [])]
    status = out["metadata"]["annotations"]["sidecar.linnix.io/status"]
    if out["spec"].get("hostUsers") is False:
        assert TRACER not in names and "spec.hostUsers is false" in status, status
    else:
        assert names[0] == TRACER and status.startswith("injected"), (names, status)


@pytest.mark.parametrize("path", sorted((FIXTURES / "fail").glob("*.yaml")), ids=lambda p: p.stem)
def test_baseline_fail_fixtures_are_refused(team, path):
    result = create(team, fixture(path))
    assert result.returncode != 0, f"{path.name} admitted in a guarded namespace"
    invalid = refused_by_validation(team, path)
    if invalid is None:
        assert DENIED in result.stderr and "Pod Security baseline" in result.stderr, result.stderr


@pytest.mark.parametrize("team", [{"guarded": False}], indirect=True)
def test_without_the_guard_the_fail_fixtures_are_admitted(team):
    """The refusals above are the guard's: the same namespace without the
    label (still enforcing privileged) admits every fail fixture, injected,
    that the API server's validation does not refuse by itself."""
    admitted = 0
    for path in sorted((FIXTURES / "fail").glob("*.yaml")):
        result = create(team, fixture(path))
        invalid = refused_by_validation(team, path)
        if invalid is None:
            assert result.returncode == 0, f"{path.name}: the injected pod is refused: {result.stderr}"
            admitted += 1
    assert admitted >= 25, admitted


def injected_pod(team: str, name: str) -> dict:
    apply(pod(name), namespace=team)
    return wait_ready(team, name)


def test_a_tracer_edited_in_a_deployment_template_is_refused(team):
    tracer = {"name": TRACER, "image": SIDECAR_IMAGE, "imagePullPolicy": "Never", "restartPolicy": "Always",
              "args": ["trace", "--", "/bin/sh", "-c", "sleep 3600"],
              "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tampered"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "tampered"}},
                 "template": {"metadata": {"labels": {"app": "tampered"}},
                              "spec": {**pod("x")["spec"], "shareProcessNamespace": True,
                                       "initContainers": [tracer]}}},
    }
    apply(deployment, namespace=team)

    def refused():
        events = kubectl("get", "events", "-n", team, "-o", "json").json()["items"]
        return [e["message"] for e in events if e["reason"] == "FailedCreate" and DENIED in e["message"]]
    message = eventually("the ReplicaSet's FailedCreate", refused)[0]
    assert "is not the tracer as the injector writes it" in message, message
    assert not kubectl("get", "pods", "-n", team, "-l", "app=tampered", "-o", "name").stdout.strip()


def test_kubectl_set_image_on_the_tracer_is_refused(team):
    injected_pod(team, "victim")
    result = kubectl("set", "image", "-n", team, "pod/victim", f"{TRACER}={APP_IMAGE}", check=False)
    assert result.returncode != 0 and DENIED in result.stderr, result.stderr
    assert get("pod", "victim", team)["spec"]["initContainers"][0]["image"] == SIDECAR_IMAGE


def test_a_sysadmin_debug_container_is_refused(team):
    injected_pod(team, "victim")
    result = kubectl("debug", "-n", team, "victim", f"--image={APP_IMAGE}", "--image-pull-policy=Never",
                     "--profile=sysadmin", "--container=root", "--", "sleep", "60", check=False)
    assert result.returncode != 0 and DENIED in result.stderr and "privileged" in result.stderr, result.stderr
    assert not get("pod", "victim", team)["spec"].get("ephemeralContainers")


def test_exec_into_the_tracer_is_refused(team):
    injected_pod(team, "victim")
    result = kubectl("exec", "-n", team, "victim", "-c", TRACER, "--", "/usr/bin/linnix-sidecar", "--version",
                     check=False)
    assert result.returncode != 0 and DENIED in result.stderr, result.stderr
    # The app stays reachable, and without -c kubectl names the default
    # container (the injector sets it to the app).
    assert kubectl("exec", "-n", team, "victim", "--", "/bin/echo", "ok").stdout.strip() == "ok"


def test_exec_without_a_container_name_is_refused(team):
    """kubectl always names a container; a raw API call may not, and the API
    server would then pick the pod's only app container, which may be the
    tracer. The refusal comes before any stream is opened."""
    injected_pod(team, "victim")
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key, field in (("ca", "certificate-authority-data"), ("crt", "client-certificate-data"),
                           ("key", "client-key-data")):
            files[key] = Path(tmp, key)
            files[key].write_bytes(base64.b64decode((cluster if key == "ca" else user)[field]))
        response = requests.post(
            f"{cluster['server']}/api/v1/namespaces/{team}/pods/victim/exec?command=id&stdout=true",
            cert=(str(files["crt"]), str(files["key"])), verify=str(files["ca"]), timeout=30)
    assert response.status_code == 403, (response.status_code, response.text)
    assert DENIED in response.text and "container" in response.text, response.text


@pytest.mark.parametrize("change", [["sidecar.linnix.io/guard-"], ["sidecar.linnix.io/guard=off"],
                                    ["sidecar.linnix.io/guard-", "pod-security.kubernetes.io/enforce=privileged"]],
                         ids=["remove", "other-value", "remove-staying-privileged"])
def test_relabelling_the_namespace_is_refused(team, change):
    result = kubectl("label", "namespace", team, "--overwrite", *change, check=False)
    assert result.returncode != 0 and DENIED in result.stderr, result.stderr
    assert get("namespace", team)["metadata"]["labels"]["sidecar.linnix.io/guard"] == "baseline"


def test_the_guard_goes_with_a_raised_enforce_level(team):
    kubectl("label", "namespace", team, "sidecar.linnix.io/guard-", "pod-security.kubernetes.io/enforce=baseline",
            "--overwrite")
    assert "sidecar.linnix.io/guard" not in get("namespace", team)["metadata"]["labels"]


def test_a_kubernetes_service_in_the_namespace_does_not_move_the_tracer(team):
    """Service links would set KUBERNETES_SERVICE_HOST to a Service named
    kubernetes in the pod's namespace; the injector writes the cluster's
    own address into the tracer's env, which wins, and the tracer still
    reads its pod from the real API server."""
    apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes"},
           "spec": {"ports": [{"port": 443, "targetPort": 8443}]}}, namespace=team)
    real = get("service", "kubernetes", "default")["spec"]["clusterIP"]
    p = injected_pod(team, "victim")
    env = {e["name"]: e.get("value") for e in p["spec"]["initContainers"][0]["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == real and env["KUBERNETES_SERVICE_PORT"] == "443", env

    def named():
        kubectl("exec", "-n", team, "victim", "--", "/bin/true")
        return '"container":"app"' in kubectl("logs", "-n", team, "victim", "-c", TRACER).stdout
    eventually("container names from the real API server", named, timeout=30, interval=2)


def test_a_team_ca_in_the_tracer_token_volume_is_refused(team):
    """The exact tracer, but its token volume also projects a ConfigMap of
    the team's: its ca.crt would choose whom the tracer trusts."""
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "team-ca"},
           "data": {"ca.crt": "not the cluster's"}}, namespace=team)
    pod_ = create(team, pod("probe")).json()
    volume = {"name": "token", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "team-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
    spec = pod_["spec"]
    spec["automountServiceAccountToken"] = False
    spec["volumes"] = [volume]
    for c in spec["initContainers"] + spec["containers"]:
        c["volumeMounts"] = [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                              "readOnly": True}]
    tampered = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "tampered-",
                                                                "annotations": pod_["metadata"]["annotations"]},
                "spec": {k: v for k, v in spec.items() if k not in ("nodeName",)}}
    result = create(team, tampered)
    assert result.returncode != 0 and DENIED in result.stderr, result.stderr
    assert "is not the tracer as the injector writes it" in result.stderr, result.stderr
