"""The chart against the real `linnix-injector` binary.

The chart writes the injector's config file and command line; these tests
feed exactly what the chart renders to the binary built from this workspace:
the ConfigMap's config file must be accepted by `inject` (which refuses
unknown keys) and shape the injected sidecar, every flag of the Deployment
must exist on `serve`, and the existingSecret recipe of the chart's README
(`certs`, then a Secret and a caBundle) must give a certificate that the
webhook's caBundle verifies for the Service's DNS names.
"""

from __future__ import annotations

import base64
import os
import pathlib
import subprocess

import kubernetes_validate
import pytest
import yaml

from chart_support import only
from conftest import RELEASE, render

# The namespace of the chart README's install commands, which the
# existingSecret recipe below follows.
INSTALL_NS = "linnix-system"

APP_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web",
        "namespace": "team-a",
        "annotations": {"sidecar.linnix.io/inject": "true"},
    },
    "spec": {"containers": [{"name": "web", "image": "registry.local/web:1"}]},
}


def inject(binary: pathlib.Path, config_text: str | None, tmp_path: pathlib.Path) -> dict:
    """`linnix-injector inject` on APP_POD; without config_text, its built-in defaults."""
    args = [str(binary), "inject", "-f", "-"]
    if config_text is not None:
        config = tmp_path / "config.yaml"
        config.write_text(config_text)
        args += ["--config", str(config)]
    result = subprocess.run(
        args,
        input=yaml.safe_dump(APP_POD), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert len(docs) == 1, result.stdout
    return docs[0]


CUSTOM_SIDECAR = {
    "name": "tracer",
    "image": {"repository": "registry.local/linnix-sidecar", "tag": "1.2.3", "pullPolicy": "Always"},
    "args": ["--log-level=debug"],
    "metricsPort": 9500,
    "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/linnix-tracer.json"},
    "resources": {
        "requests": {"cpu": "50m", "memory": "48Mi"},
        "limits": {"cpu": "500m", "memory": "128Mi"},
    },
}


@pytest.mark.parametrize("native", [True, False], ids=["native-sidecar", "regular-container"])
def test_injector_accepts_the_charts_config_and_applies_it(injector_chart, injector_bin, tmp_path, native):
    values = {"sidecar": {**CUSTOM_SIDECAR, "nativeSidecar": native}}
    config_text = only(render(injector_chart, values, namespace=INSTALL_NS), "ConfigMap")["data"]["config.yaml"]
    pod = inject(injector_bin, config_text, tmp_path)

    spec = pod["spec"]
    init = [c for c in spec.get("initContainers", []) if c["name"] == "tracer"]
    regular = [c for c in spec["containers"] if c["name"] == "tracer"]
    if native:
        assert regular == []
        (tracer,) = init
        assert tracer["restartPolicy"] == "Always"
    else:
        assert init == []
        (tracer,) = regular
        assert "restartPolicy" not in tracer
    assert [c["name"] for c in spec["containers"] if c["name"] != "tracer"] == ["web"]
    assert tracer["image"] == "registry.local/linnix-sidecar:1.2.3"
    assert tracer["imagePullPolicy"] == "Always"
    assert "--log-level=debug" in tracer.get("args", [])
    assert 9500 in [p["containerPort"] for p in tracer["ports"]]
    assert tracer["securityContext"]["seccompProfile"] == CUSTOM_SIDECAR["seccompProfile"]
    assert tracer["resources"] == CUSTOM_SIDECAR["resources"]
    # What the injector returns is still a valid Pod.
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


def test_charts_default_config_gives_the_injectors_default_pod(injector_chart, injector_bin, tmp_path):
    config_text = only(render(injector_chart, {}, namespace=INSTALL_NS), "ConfigMap")["data"]["config.yaml"]
    with_chart_defaults = inject(injector_bin, config_text, tmp_path)
    with_builtin_defaults = inject(injector_bin, None, tmp_path)
    assert with_chart_defaults == with_builtin_defaults
    (tracer,) = [c for c in with_chart_defaults["spec"]["initContainers"] if c["name"] == "linnix-tracer"]
    assert tracer["image"] == "linnix/linnix-sidecar:0.1.0"


@pytest.mark.parametrize("mode", ["selfSigned", "certManager", "existingSecret"])
def test_serve_knows_every_flag_the_deployment_passes(injector_chart, injector_bin, mode):
    values = {"certificates": {"mode": mode}}
    if mode == "existingSecret":
        values["certificates"]["existingSecret"] = {"name": "tls", "caBundle": "QUJD"}
    container = only(render(injector_chart, values, namespace=INSTALL_NS), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "serve"
    help_text = subprocess.run(
        [str(injector_bin), "serve", "--help"], check=True, capture_output=True, text=True
    ).stdout
    for arg in container["args"][1:]:
        flag = arg.split("=", 1)[0]
        assert f"{flag} " in help_text or f"{flag}=" in help_text or f"{flag}\n" in help_text, (
            f"{flag} is not a flag of `linnix-injector serve`:\n{help_text}"
        )
    # POD_NAMESPACE is how the injector learns its own namespace.
    assert "POD_NAMESPACE" in help_text


def test_existing_secret_recipe_from_the_readme(injector_chart, injector_bin, tmp_path):
    """`certs` output, used as the README says, verifies for the Service."""
    service = f"{RELEASE}-linnix-injector"
    dns = [f"{service}.{INSTALL_NS}.svc", f"{service}.{INSTALL_NS}.svc.cluster.local"]
    out = tmp_path / "tls"
    subprocess.run(
        [str(injector_bin), "certs", "--out", str(out), *[a for d in dns for a in ("--dns", d)]],
        check=True, capture_output=True, text=True, timeout=30,
    )
    ca_bundle = base64.b64encode((out / "ca.crt").read_bytes()).decode()
    values = {
        "certificates": {
            "mode": "existingSecret",
            "existingSecret": {"name": "linnix-injector-tls", "caBundle": ca_bundle},
        }
    }
    objects = render(injector_chart, values, namespace=INSTALL_NS)
    hook = only(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    assert only(objects, "Service")["metadata"]["name"] == service
    kubernetes_validate.validate(
        only(objects, "MutatingWebhookConfiguration"), kubernetes_validate.latest_version(), strict=True
    )
    # The API server verifies the serving certificate with caBundle, for the
    # name <service>.<namespace>.svc.
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(base64.b64decode(hook["clientConfig"]["caBundle"]))
    for name in dns:
        result = subprocess.run(
            ["openssl", "verify", "-CAfile", str(bundle), "-verify_hostname", name, str(out / "tls.crt")],
            capture_output=True, text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    wrong = subprocess.run(
        ["openssl", "verify", "-CAfile", str(bundle), "-verify_hostname", "other.svc", str(out / "tls.crt")],
        capture_output=True, text=True,
    )
    assert wrong.returncode != 0
    assert os.path.getsize(out / "tls.key") > 0
