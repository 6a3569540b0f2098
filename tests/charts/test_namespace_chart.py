"""linnix-namespace, the chart a team installs in its namespace: the Role and
RoleBinding that let its tracers read their pod and publish events.
"""

from __future__ import annotations

import helm_python as helm
import pytest

from chart_support import kinds, only
from conftest import TEAM_NS, notes, render


# --------------------------------------------------------------------------
# linnix-namespace chart


def test_namespace_chart_role_grants_exactly_pod_get_and_events(namespace_chart):
    objects = render(namespace_chart, namespace=TEAM_NS)
    assert kinds(objects) == ["Role", "RoleBinding"]
    role = only(objects, "Role")
    assert role["metadata"]["namespace"] == TEAM_NS
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    binding = only(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == TEAM_NS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default", "namespace": TEAM_NS}]


def test_namespace_chart_binds_every_service_account(namespace_chart):
    objects = render(namespace_chart, {"serviceAccounts": ["web", "worker"]}, namespace=TEAM_NS)
    assert only(objects, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "web", "namespace": TEAM_NS},
        {"kind": "ServiceAccount", "name": "worker", "namespace": TEAM_NS},
    ]


@pytest.mark.parametrize(
    "grants,rules",
    [
        ({"events": False}, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        (
            {"podNames": False},
            [{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}],
        ),
    ],
)
def test_namespace_chart_grants_can_be_turned_off(namespace_chart, grants, rules):
    assert only(render(namespace_chart, {"grants": grants}, namespace=TEAM_NS), "Role")["rules"] == rules


BAD_NAMESPACE_VALUES = {
    "no-service-account": {"serviceAccounts": []},
    "invalid-service-account": {"serviceAccounts": ["Web_App"]},
    "service-accounts-not-a-list": {"serviceAccounts": "default"},
    "nothing-granted": {"grants": {"podNames": False, "events": False}},
    "unknown-grant": {"grants": {"secrets": True}},
    "unknown-key": {"namespace": "x"},
}


@pytest.mark.parametrize("values", BAD_NAMESPACE_VALUES.values(), ids=BAD_NAMESPACE_VALUES.keys())
def test_schema_rejects_bad_namespace_values(namespace_chart, values):
    with pytest.raises(helm.HelmValuesError):
        render(namespace_chart, values, namespace=TEAM_NS)


def test_namespace_chart_notes_tell_how_to_opt_in(namespace_chart):
    text = notes(namespace_chart, namespace=TEAM_NS)
    assert f"kubectl annotate namespace {TEAM_NS} sidecar.linnix.io/inject=true" in text
