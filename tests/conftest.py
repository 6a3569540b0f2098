"""What every test under tests/ shares: the repository root, the charts,
rendering them like `helm template`, and the injector binary.

The injector binary is built by `scripts/test.sh` (stage `charts`) and passed
in, never built here: a fixture that ran cargo would hide a build inside a
test run and could test a different profile from the one the script built.
`--injector-bin PATH` or the environment variable LINNIX_INJECTOR_BIN name it.
"""

from __future__ import annotations

import os
import pathlib

import helm_python as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
INJECTOR_CHART = ROOT / "charts" / "linnix-injector"
NAMESPACE_CHART = ROOT / "charts" / "linnix-namespace"

RELEASE = "linnix"
RELEASE_NS = "observability"
TEAM_NS = "team-a"


def pytest_addoption(parser):
    parser.addoption(
        "--injector-bin",
        default=os.environ.get("LINNIX_INJECTOR_BIN"),
        help="the linnix-injector binary to test (default: $LINNIX_INJECTOR_BIN; "
        "scripts/test.sh builds it and sets it)",
    )


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def injector_bin(request) -> pathlib.Path:
    given = request.config.getoption("--injector-bin")
    if not given:
        pytest.fail(
            "no injector binary: run `./scripts/test.sh charts`, or pass --injector-bin PATH "
            "(or LINNIX_INJECTOR_BIN) to pytest",
            pytrace=False,
        )
    binary = pathlib.Path(given).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"injector binary {binary} is not an executable file", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def injector_chart():
    with helm.Chart.load(INJECTOR_CHART) as chart:
        yield chart


@pytest.fixture(scope="session")
def namespace_chart():
    with helm.Chart.load(NAMESPACE_CHART) as chart:
        yield chart


def render(chart, values=None, *, name=RELEASE, namespace=RELEASE_NS) -> list[dict]:
    """Renders like `helm template` and returns every Kubernetes object."""
    manifests = chart.render(values or {}, name=name, namespace=namespace)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                objects.append(doc)
    return objects


def notes(chart, values=None, *, name=RELEASE, namespace=RELEASE_NS) -> str:
    """The rendered NOTES.txt."""
    manifests = chart.render(values or {}, name=name, namespace=namespace)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
