"""The alert rules (charts/linnix-injector/files/alerts.rules.yaml) under
the real promtool: they load, their unit tests pass, every alert has a test
that fires it and one that does not, and every alert has a runbook entry."""

from __future__ import annotations

import re

import pytest
import yaml

from promtool_support import RULE_TESTS, RULES, RUNBOOK, alerts, run

ALERT_NAMES = [a["alert"] for a in alerts()]


def test_rules_load():
    r = run("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in r.stdout


def test_rule_unit_tests_pass():
    r = run("test", "rules", *(t.name for t in RULE_TESTS), cwd=RULE_TESTS[0].parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(RULE_TESTS), r.stdout


@pytest.mark.parametrize("alert", ALERT_NAMES)
@pytest.mark.parametrize("replacement", ["vector(1)", "vector(1) == 0"], ids=["always", "never"])
def test_each_alert_has_firing_and_quiet_cases(tmp_path, alert, replacement):
    """Replacing the alert's expression by one that always fires (or never
    does) must break the unit tests: a test expects it quiet somewhere (or
    firing somewhere) for the inputs given."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = replacement
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    names = []
    for i, path in enumerate(RULE_TESTS):
        tests = yaml.safe_load(path.read_text())
        tests["rule_files"] = ["rules.yaml"]
        names.append(f"tests{i}.yaml")
        (tmp_path / names[-1]).write_text(yaml.safe_dump(tests))
    r = run("test", "rules", *names, cwd=tmp_path)
    assert r.returncode != 0, f"{alert} with expr {replacement!r} still passes every test"
    out = r.stdout + r.stderr
    assert f"alertname: {alert}" in out, out


def test_every_alert_is_tested_firing_and_quiet():
    cases = [
        c
        for path in RULE_TESTS
        for t in yaml.safe_load(path.read_text())["tests"]
        for c in t.get("alert_rule_test", [])
    ]
    for alert in ALERT_NAMES:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no firing case"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no quiet case"


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_entry_with_a_first_command():
    text = RUNBOOK.read_text()
    sections = re.split(r"^### ", text, flags=re.M)[1:]
    by_heading = {s.splitlines()[0]: s for s in sections}
    for rule in alerts():
        name = rule["alert"]
        assert name in by_heading, f"docs/alerts.md has no section for {name}"
        body = by_heading[name]
        assert "```sh\n" in body, f"{name}: the runbook gives no command to run"
        url = rule["annotations"]["runbook_url"]
        assert url == f"https://github.com/linnix/linnix/blob/main/docs/alerts.md#{anchor(name)}", url
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert set(by_heading) == set(ALERT_NAMES), "runbook sections without an alert"


def test_rules_use_only_exported_metric_names(repo_root):
    """Every linnix_* name in the rules is one the tracer or the injector
    registers: a renamed metric must not leave an alert that never fires."""
    def names(dirs, prefix):
        text = "".join(p.read_text() for d in dirs for p in (repo_root / d).rglob("*.rs"))
        return {prefix + m for m in re.findall(r'register\(\s*"(\w+)"', text)}

    # The tracer registers full names; the injector's registry adds its prefix.
    registered = names(["sidecar/src/metrics", "sidecar/src/memory_metrics"], "")
    registered |= names(["injector/src"], "linnix_injector_")
    used = set()
    for rule in alerts():
        used |= set(re.findall(r"\blinnix_\w+", rule["expr"]))
    # Counters and info metrics are registered without the suffix the
    # exposition adds.
    missing = {
        u
        for u in used
        if not {u, u.removesuffix("_total"), u.removesuffix("_info")} & registered
    }
    assert not missing, f"metrics the code does not register: {missing}"
