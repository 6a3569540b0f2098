"""`sidecar.allowedOverrides`: the chart's values, its schema and the
config file it renders, against the real `linnix-injector` binary.

The schema's list of names must be exactly what the injector accepts, the
rendered config must reach the injector, and a setting the platform left
out must be ignored with a warning while the pod is still injected. The
binary is driven through `check -o json`, which reports the admission's
warnings and the tracer container.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import helm_python as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "linnix-injector"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
NAMES = SCHEMA["properties"]["sidecar"]["properties"]["allowedOverrides"]["items"]["enum"]


@pytest.fixture(scope="module")
def chart(injector_chart):
    return injector_chart


def rendered_config(chart, values: dict) -> str:
    manifests = chart.render(values, name="linnix", namespace="linnix-system")
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] == "ConfigMap":
                return doc["data"]["config.yaml"]
    raise AssertionError("no ConfigMap rendered")


def check(binary: pathlib.Path, config_text: str, annotations: dict, tmp_path) -> subprocess.CompletedProcess:
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "annotations": {"sidecar.linnix.io/inject": "true", **annotations}},
        "spec": {"containers": [{"name": "web", "image": "registry.local/web:1"}]},
    }
    return subprocess.run(
        [str(binary), "check", "-f", "-", "-o", "json", "--config", str(config)],
        input=yaml.safe_dump(pod), capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/nonexistent"},
    )


def test_the_defaults_allow_every_override_the_schema_names(chart):
    config = yaml.safe_load(rendered_config(chart, {}))
    assert config["sidecar"]["allowedOverrides"] == NAMES
    assert len(NAMES) == len(set(NAMES)) == 9


def test_the_injector_knows_exactly_the_schemas_names(chart, injector_bin, tmp_path):
    # Each name alone is accepted...
    for name in NAMES:
        text = rendered_config(chart, {"sidecar": {"allowedOverrides": [name]}})
        result = check(injector_bin, text, {}, tmp_path)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    # ...and a name the schema lacks is refused by the injector too.
    result = check(injector_bin, "sidecar: {allowedOverrides: [event-cap]}\n", {}, tmp_path)
    assert result.returncode == 2
    assert "unknown variant `event-cap`" in result.stderr
    # Every setting the injector reports is one the schema names.
    result = check(injector_bin, rendered_config(chart, {}), {}, tmp_path)
    (report,) = json.loads(result.stdout)
    assert list(report["settings"]) == NAMES


@pytest.mark.parametrize(
    "value",
    [["event-cap"], ["cpu", "cpu"], "cpu", [3], {"cpu": True}],
    ids=["unknown", "duplicate", "not-a-list", "not-a-string", "a-map"],
)
def test_the_schema_rejects_bad_lists(chart, value):
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"sidecar": {"allowedOverrides": value}})


def test_a_forbidden_override_is_ignored_with_a_warning(chart, injector_bin, tmp_path):
    values = {
        "sidecar": {
            "args": ["--max-events-per-sec=2000"],
            "allowedOverrides": [n for n in NAMES if n != "max-events-per-sec"],
        }
    }
    text = rendered_config(chart, values)
    annotations = {
        "sidecar.linnix.io/max-events-per-sec": "0",
        "sidecar.linnix.io/memory-limit": "128Mi",
    }
    result = check(injector_bin, text, annotations, tmp_path)
    assert result.returncode == 0, "still injected: " + result.stderr
    (report,) = json.loads(result.stdout)
    assert report["injected"] is True
    (warning,) = report["warnings"]
    assert warning.startswith('sidecar.linnix.io/max-events-per-sec="0" ignored: ')
    assert "sidecar.allowedOverrides" in warning
    assert report["settings"]["max-events-per-sec"] == {"value": "2000", "origin": "config"}
    assert report["settings"]["memory-limit"] == {"value": "128Mi", "origin": "pod"}
    tracer = report["tracer"]
    assert "--max-events-per-sec=2000" in tracer["args"]
    assert tracer["resources"]["limits"]["memory"] == "128Mi"


def test_an_empty_list_allows_nothing_and_unset_allows_everything(chart, injector_bin, tmp_path):
    annotations = {"sidecar.linnix.io/threads": "true"}
    text = rendered_config(chart, {"sidecar": {"allowedOverrides": []}})
    (report,) = json.loads(check(injector_bin, text, annotations, tmp_path).stdout)
    assert report["settings"]["threads"]["origin"] == "config"
    assert len(report["warnings"]) == 1

    text = rendered_config(chart, {"sidecar": {"allowedOverrides": None}})
    assert "allowedOverrides" not in yaml.safe_load(text)["sidecar"]
    (report,) = json.loads(check(injector_bin, text, annotations, tmp_path).stdout)
    assert report["settings"]["threads"] == {"value": "true", "origin": "pod"}
    assert report["warnings"] == []
    assert "--threads" in report["tracer"]["args"]
