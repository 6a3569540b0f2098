"""The chart's Prometheus Operator objects (PodMonitor, ServiceMonitor,
PrometheusRule): off by default, and when on, aimed at what the injector
really writes and the Service really serves, with the rules of the one
rules file."""

from __future__ import annotations

import copy
import subprocess

import jsonschema
import pytest
import yaml

from conftest import RELEASE_NS, render
from promtool_support import ROOT, RULES, run

CRDS = ROOT / "tests" / "fixtures" / "prometheus-operator-crds"

MONITORING = "monitoring.coreos.com/v1"
ALL_ON = {
    "podMonitor": {"enabled": True, "labels": {"release": "kps"}, "interval": "30s"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
}


def monitoring_objects(objects):
    return {o["kind"]: o for o in objects if o["apiVersion"] == MONITORING}


def crd_schema(kind: str) -> dict:
    """The v1 openAPIV3Schema of the operator's CRD for `kind`, made strict:
    where a schema lists properties and says nothing of others, others are
    errors (the API server would drop them, as kubectl --validate=strict
    refuses them)."""
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            return strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


def strict(schema):
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def crd_errors(obj: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema(obj["kind"]))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]


@pytest.mark.parametrize("values", [ALL_ON, {
    "podMonitor": {"enabled": True, "namespaces": ["team-a"]},
    "serviceMonitor": {"enabled": True, "interval": "1m"},
    "prometheusRule": {"enabled": True},
}], ids=["labels-and-interval", "namespaces"])
def test_objects_are_valid_against_the_operators_crds(injector_chart, values):
    objects = monitoring_objects(render(injector_chart, values))
    assert set(objects) == {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    for obj in objects.values():
        assert crd_errors(obj) == [], obj["kind"]


def test_the_crd_check_refuses_a_misspelt_field(injector_chart):
    pm = monitoring_objects(render(injector_chart, ALL_ON))["PodMonitor"]
    pm["spec"]["podMetricsEndpoints"][0]["honourLabels"] = True
    pm["spec"]["podMetricsEndpoints"][0]["interval"] = "soon"
    errors = crd_errors(pm)
    assert any("honourLabels" in e for e in errors), errors
    assert any("interval" in e for e in errors), errors


def test_off_by_default(injector_chart):
    assert monitoring_objects(render(injector_chart)) == {}


def test_pod_monitor_scrapes_the_port_the_injector_writes(injector_chart, injector_bin, tmp_path):
    objects = render(injector_chart, ALL_ON)
    pm = monitoring_objects(objects)["PodMonitor"]
    assert pm["metadata"]["labels"]["release"] == "kps"
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    [endpoint] = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["honorLabels"] is True and endpoint["interval"] == "30s"

    # The pod the injector makes with the chart's own configuration.
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(config)
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-a", "annotations": {"sidecar.linnix.io/inject": "true"}},
        "spec": {"containers": [{"name": "web", "image": "registry.local/web:1"}]},
    }
    r = subprocess.run(
        [injector_bin, "inject", "-f", "-", "--config", tmp_path / "config.yaml"],
        input=yaml.safe_dump(pod), capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    injected = yaml.safe_load(r.stdout)
    containers = injected["spec"].get("initContainers", []) + injected["spec"]["containers"]
    named = {p["name"]: c["name"] for c in containers for p in c.get("ports", [])}
    assert named.get(endpoint["port"]) == "linnix-tracer", named
    # The app's own containers have no such port: only tracers are scraped.
    assert list(named.values()).count("linnix-tracer") == len(named)


def test_pod_monitor_can_be_limited_to_namespaces(injector_chart):
    values = {"podMonitor": {"enabled": True, "namespaces": ["team-a", "team-b"]}}
    pm = monitoring_objects(render(injector_chart, values))["PodMonitor"]
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    assert "interval" not in pm["spec"]["podMetricsEndpoints"][0]


def test_service_monitor_selects_the_injectors_metrics_port(injector_chart):
    objects = render(injector_chart, ALL_ON)
    sm = monitoring_objects(objects)["ServiceMonitor"]
    service = next(o for o in objects if o["kind"] == "Service")
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    [endpoint] = sm["spec"]["endpoints"]
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    [injector] = deployment["spec"]["template"]["spec"]["containers"]
    container_port = next(p for p in injector["ports"] if p["name"] == port["targetPort"])
    # The Service port leads to the injector's --metrics-addr.
    assert f"--metrics-addr=0.0.0.0:{container_port['containerPort']}" in injector["args"]


def test_prometheus_rule_is_the_rules_file(injector_chart, tmp_path):
    rule = monitoring_objects(render(injector_chart, ALL_ON))["PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # What the operator would hand to Prometheus loads under promtool.
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump(rule["spec"]))
    r = run("check", "rules", tmp_path / "rendered.yaml")
    assert r.returncode == 0, r.stdout + r.stderr


def inject_with_chart(injector_chart, injector_bin, tmp_path, values, annotations):
    objects = render(injector_chart, values)
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(config)
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-a",
                     "annotations": {"sidecar.linnix.io/inject": "true", **annotations}},
        "spec": {"containers": [{"name": "web", "image": "registry.local/web:1"}]},
    }
    r = subprocess.run(
        [injector_bin, "inject", "-f", "-", "--config", tmp_path / "config.yaml"],
        input=yaml.safe_dump(pod), capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    injected = yaml.safe_load(r.stdout)
    return injected["metadata"]["annotations"], r.stderr


PROM_KEYS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")


def test_prometheus_annotations_are_off_by_default(injector_chart, injector_bin, tmp_path):
    annotations, _ = inject_with_chart(injector_chart, injector_bin, tmp_path, {}, {})
    assert not set(PROM_KEYS) & set(annotations)
    # A pod may ask.
    annotations, _ = inject_with_chart(
        injector_chart, injector_bin, tmp_path, {}, {"sidecar.linnix.io/prometheus-annotations": "true"})
    assert [annotations[k] for k in PROM_KEYS] == ["true", "9464", "/metrics"]


def test_prometheus_annotations_name_the_tracers_port(injector_chart, injector_bin, tmp_path):
    values = {"sidecar": {"prometheusAnnotations": True, "metricsPort": 9500}}
    annotations, _ = inject_with_chart(injector_chart, injector_bin, tmp_path, values, {})
    assert [annotations[k] for k in PROM_KEYS] == ["true", "9500", "/metrics"]
    # A pod may decline.
    annotations, _ = inject_with_chart(
        injector_chart, injector_bin, tmp_path, values, {"sidecar.linnix.io/prometheus-annotations": "false"})
    assert not set(PROM_KEYS) & set(annotations)


def test_the_apps_own_prometheus_annotations_are_kept_with_a_warning(injector_chart, injector_bin, tmp_path):
    values = {"sidecar": {"prometheusAnnotations": True}}
    own = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}
    annotations, stderr = inject_with_chart(injector_chart, injector_bin, tmp_path, values, own)
    assert {k: annotations.get(k) for k in PROM_KEYS} == {**own, "prometheus.io/path": None}
    assert "prometheus.io/scrape, prometheus.io/port" in stderr and "PodMonitor" in stderr, stderr
