"""promtool from Debian's `prometheus` package (scripts/setup.sh installs
it): the rules' checker and unit-test runner, and a PromQL parser."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "charts" / "linnix-injector" / "files" / "alerts.rules.yaml"
HERE = pathlib.Path(__file__).resolve().parent
# Unit tests of the rules; the second file holds those that wait hours.
RULE_TESTS = [HERE / "alerts.test.yaml", HERE / "alerts-hours.test.yaml"]
RUNBOOK = ROOT / "docs" / "alerts.md"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run scripts/setup.sh (Debian package prometheus)", pytrace=False)
    return path


def run(*args: str | pathlib.Path, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def alerts(rules: dict | None = None) -> list[dict]:
    rules = rules if rules is not None else yaml.safe_load(RULES.read_text())
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
