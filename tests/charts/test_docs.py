"""The charts' READMEs and NOTES.txt: every value documented, and command
lines that a shell can run.
"""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from chart_support import MODES
from conftest import INJECTOR_CHART, NAMESPACE_CHART, notes


# --------------------------------------------------------------------------
# Documentation


def leaf_keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys.extend(leaf_keys(value, path + "."))
        else:
            keys.append(path)
    return keys


def all_keys(values: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        keys.add(path)
        if isinstance(value, dict):
            keys |= all_keys(value, path + ".")
    return keys


@pytest.mark.parametrize("chart_dir", [INJECTOR_CHART, NAMESPACE_CHART], ids=lambda p: p.name)
def test_readme_documents_every_value(chart_dir):
    """Each value is in the README's table, itself or through its parent
    (`resources` covers `resources.limits.cpu`), and the table names no value
    that does not exist."""
    readme = (chart_dir / "README.md").read_text()
    section = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\|\s*`([^`]+)`", section, flags=re.M))
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())

    def covered(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1))

    missing = [key for key in leaf_keys(values) if not covered(key)]
    assert missing == []
    assert documented - all_keys(values) == set()


def test_readmes_explain_the_namespace_grants():
    for readme in (INJECTOR_CHART / "README.md", NAMESPACE_CHART / "README.md"):
        text = readme.read_text()
        assert "kubectl annotate namespace" in text and "sidecar.linnix.io/inject=true" in text
        assert "container ids" in text, readme


def test_notes_command_lines_are_well_formed(injector_chart):
    for mode in ("selfSigned", "certManager", "existingSecret"):
        for line in notes(injector_chart, MODES[mode]).splitlines():
            if line.strip().startswith(("kubectl", "helm")):
                shlex.split(line)  # raises on unbalanced quotes
