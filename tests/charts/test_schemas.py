"""The charts against real Helm and real schemas: `helm lint --strict`, every
rendered object against Kubernetes' OpenAPI schemas (strict), and the
charts' values.schema.json refusing bad values.
"""

from __future__ import annotations

import copy

import helm_python as helm
import pytest
import yaml

from chart_support import CA_PEM_B64, KUBE_VERSIONS, MODES, only, validate
from conftest import INJECTOR_CHART, NAMESPACE_CHART, RELEASE_NS, TEAM_NS, render


# --------------------------------------------------------------------------
# Lint


@pytest.mark.parametrize("chart_dir", [INJECTOR_CHART, NAMESPACE_CHART], ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ["default", "certManager", "existingSecret"])
def test_lint_strict_is_clean(chart_dir, mode):
    values = {} if mode == "default" or chart_dir == NAMESPACE_CHART else MODES[mode]
    report = helm.lint(chart_dir, values, strict=True, namespace=RELEASE_NS)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; 1 (info) is only "icon is recommended".
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


def test_lint_reports_values_that_break_the_schema():
    report = helm.lint(INJECTOR_CHART, {"replicaCount": "two"}, strict=True)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"])
    text = str(report)
    assert "replicaCount" in text


# --------------------------------------------------------------------------
# Schemas of every rendered object


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("mode", list(MODES))
def test_injector_objects_are_valid_kubernetes(injector_chart, mode, version):
    objects = render(injector_chart, MODES[mode])
    assert objects
    for obj in objects:
        validate(obj, version)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_namespace_objects_are_valid_kubernetes(namespace_chart, version):
    objects = render(
        namespace_chart, {"serviceAccounts": ["default", "batch"]}, namespace=TEAM_NS
    )
    assert objects
    for obj in objects:
        validate(obj, version)


def test_schema_validation_catches_invalid_objects():
    """The validation above can fail: a broken Deployment is refused."""
    with helm.Chart.load(INJECTOR_CHART) as chart:
        deployment = copy.deepcopy(only(render(chart), "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError, match="Deployment"):
        validate(deployment, KUBE_VERSIONS[-1])
    deployment = copy.deepcopy(deployment)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["notAField"] = True
    with pytest.raises(AssertionError, match="Deployment"):
        validate(deployment, KUBE_VERSIONS[-1])


# --------------------------------------------------------------------------
# values.schema.json


BAD_INJECTOR_VALUES = {
    "replicas-not-a-number": {"replicaCount": "two"},
    "zero-replicas": {"replicaCount": 0},
    "unknown-certificate-mode": {"certificates": {"mode": "vault"}},
    "unknown-top-level-key": {"replicas": 2},
    "unknown-sidecar-key": {"sidecar": {"privileged": True}},
    "sidecar-port-out-of-range": {"sidecar": {"metricsPort": 70000}},
    "native-sidecar-not-a-bool": {"sidecar": {"nativeSidecar": "yes"}},
    "localhost-seccomp-without-profile": {"sidecar": {"seccompProfile": {"type": "Localhost"}}},
    "unknown-seccomp-type": {"sidecar": {"seccompProfile": {"type": "Privileged"}}},
    "bad-quantity": {"sidecar": {"resources": {"limits": {"memory": "lots"}}}},
    # The injector's config file knows cpu and memory only.
    "sidecar-ephemeral-storage": {"sidecar": {"resources": {"limits": {"ephemeral-storage": "1Gi"}}}},
    "timeout-too-long": {"webhook": {"timeoutSeconds": 31}},
    "unknown-failure-policy": {"webhook": {"failurePolicy": "Retry"}},
    "existing-secret-without-name": {
        "certificates": {"mode": "existingSecret", "existingSecret": {"caBundle": CA_PEM_B64}}
    },
    "existing-secret-without-ca": {
        "certificates": {"mode": "existingSecret", "existingSecret": {"name": "tls"}}
    },
    "ca-bundle-not-base64": {
        "certificates": {"mode": "existingSecret", "existingSecret": {"name": "tls", "caBundle": "-----BEGIN"}}
    },
    "issuer-kind-unknown": {
        "certificates": {"mode": "certManager", "certManager": {"issuerRef": {"name": "x", "kind": "Vault"}}}
    },
    "bad-log-level": {"logLevel": "verbose"},
}


@pytest.mark.parametrize("values", BAD_INJECTOR_VALUES.values(), ids=BAD_INJECTOR_VALUES.keys())
def test_schema_rejects_bad_injector_values(injector_chart, values):
    with pytest.raises(helm.HelmValuesError):
        injector_chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        render(injector_chart, values)


def test_schema_error_names_the_offending_key(injector_chart):
    with pytest.raises(helm.HelmValuesError, match="mode"):
        render(injector_chart, {"certificates": {"mode": "vault"}})


@pytest.mark.parametrize("mode", list(MODES))
def test_schema_accepts_the_documented_values(injector_chart, mode):
    injector_chart.validate_schema(MODES[mode])


def test_schema_accepts_the_defaults_file(injector_chart):
    injector_chart.validate_schema(yaml.safe_load((INJECTOR_CHART / "values.yaml").read_text()))
