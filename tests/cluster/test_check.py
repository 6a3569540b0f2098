"""`linnix-injector check` against the cluster, and a webhook that is down.

With the injector scaled to zero, `failurePolicy: Ignore` lets pods be
created without the tracer; `check` says why such a pod is not traced.
Once the injector is back, new pods are traced again.
"""

from __future__ import annotations

import subprocess

import pytest

from clients import (INJECTOR, RELEASE_NS, SIDECAR_IMAGE, TRACER, apply, eventually, get, kubectl, pod,
                     wait_ready)
from conftest import wait_webhook_serving


def check(injector_bin, *args: str, config=None) -> subprocess.CompletedProcess:
    argv = [str(injector_bin), "check", *args]
    if config:
        argv += ["--config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def chart_config(tmp_path, injector):
    """The configuration the running injector uses, from its ConfigMap."""
    text = kubectl("get", "configmap", INJECTOR, "-n", RELEASE_NS, "-o", r"jsonpath={.data.config\.yaml}").stdout
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_check_explains_a_traced_pod(team, injector_bin, chart_config):
    apply(pod("web"), namespace=team)
    wait_ready(team, "web")
    result = check(injector_bin, "web", "-n", team, config=chart_config)
    assert result.returncode == 0, result.stderr
    assert "result:   injected" in result.stdout and f"tracer {SIDECAR_IMAGE}, as configured" in result.stdout


def test_check_stale_lists_a_pod_with_another_tracer_image(team, injector_bin, chart_config, tmp_path):
    apply(pod("web"), namespace=team)
    wait_ready(team, "web")
    assert check(injector_bin, "--stale", "-n", team, config=chart_config).returncode == 0
    newer = tmp_path / "newer.yaml"
    newer.write_text(chart_config.read_text().replace(SIDECAR_IMAGE, "linnix/linnix-sidecar:9.9.9"))
    assert newer.read_text() != chart_config.read_text(), "the config names the tracer image"
    result = check(injector_bin, "--stale", "-n", team, config=newer)
    assert result.returncode == 1 and "web" in result.stdout, (result.stdout, result.stderr)


@pytest.fixture
def injector_down(injector):
    kubectl("scale", "deployment", INJECTOR, "-n", RELEASE_NS, "--replicas=0")
    eventually("no injector pod", lambda: not kubectl(
        "get", "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/instance=linnix", "-o", "name").stdout.strip())
    yield
    kubectl("scale", "deployment", INJECTOR, "-n", RELEASE_NS, "--replicas=2")
    kubectl("rollout", "status", "deployment", INJECTOR, "-n", RELEASE_NS, "--timeout=120s")
    wait_webhook_serving()


def test_a_down_webhook_lets_pods_through_and_check_says_why(team, injector_down, injector_bin, chart_config):
    apply(pod("untraced"), namespace=team)
    p = wait_ready(team, "untraced")
    assert TRACER not in [c["name"] for c in p["spec"].get("initContainers", []) + p["spec"]["containers"]]
    assert "sidecar.linnix.io/status" not in p["metadata"].get("annotations", {})
    result = check(injector_bin, "untraced", "-n", team, config=chart_config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "no tracer" in result.stdout and "webhook" in result.stdout, result.stdout


def test_after_the_webhook_is_back_new_pods_are_traced(team):
    """Runs after the test above, whose fixture scaled the injector back up
    and waited until the API server's calls reach it again."""
    apply(pod("again"), namespace=team)
    assert get("pod", "again", team)["spec"]["initContainers"][0]["name"] == TRACER
