"""RBAC as the API server enforces it.

A team member holds the `admin` ClusterRole in the team's namespace only
(Kubernetes' user-facing role for a namespace owner) and nothing
cluster-wide: the README's team steps must work for them, and what it says
a team cannot do must be refused. The tracer runs with its pod's service
account: with `charts/linnix-namespace` it reads its pod and writes events;
without, it degrades as the README says.
"""

from __future__ import annotations

import re

import pytest

from clients import RELEASE_NS, ROOT, TRACER, apply, eventually, helm, kubectl, pod, tracer_events, wait_ready

USER, GROUP = "alice", "team-devs"


@pytest.fixture
def member(team):
    apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": "team-admin"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]}, namespace=team)
    return team


def as_member(*args: str, **kw):
    return kubectl(*args, as_user=USER, groups=[GROUP], **kw)


@pytest.mark.parametrize("team", [{"grants": False}], indirect=True)
def test_a_team_member_installs_the_grants_and_reads_the_tracer(member):
    helm("install", "linnix-tracer", str(ROOT / "charts" / "linnix-namespace"), "-n", member,
         "--kube-as-user", USER, "--kube-as-group", GROUP)
    apply(pod("web", annotations={"sidecar.linnix.io/inject": "true"}), namespace=member,
          as_user=USER, groups=[GROUP])
    wait_ready(member, "web")
    # Names come from the pod, which the tracer looks up again on an unknown
    # container id at most every 5 s: an exec later is named.
    def named():
        as_member("exec", "-n", member, "web", "--", "/bin/true")
        return '"container":"app"' in as_member("logs", "-n", member, "web", "-c", TRACER).stdout
    eventually("container names: the tracer could read its pod", named, timeout=30, interval=2)
    assert as_member("exec", "-n", member, "web", "--", "/bin/true").returncode == 0


@pytest.mark.parametrize("verb", [
    ["annotate", "namespace", "{ns}", "sidecar.linnix.io/inject=false", "--overwrite"],
    ["label", "namespace", "{ns}", "pod-security.kubernetes.io/enforce=restricted", "--overwrite"],
    ["label", "namespace", "{ns}", "sidecar.linnix.io/guard-"],
    ["get", "configmaps", "-n", RELEASE_NS],
    ["delete", "validatingadmissionpolicies", "--all"],
    ["run", "elsewhere", "-n", "default", "--image=x", "--restart=Never"],
    ["create", "clusterrolebinding", "me", "--clusterrole=cluster-admin", "--user=" + USER],
], ids=["opt-out-namespace", "pod-security-label", "guard-label", "injector-config", "policies",
        "other-namespace", "escalate"])
def test_a_team_member_cannot(member, verb):
    result = as_member(*(a.format(ns=member) for a in verb), check=False)
    assert result.returncode != 0 and "forbidden" in result.stderr.lower(), result.stderr


def test_the_tracer_service_account_has_what_the_chart_grants(team):
    sa = f"system:serviceaccount:{team}:default"
    for verb, resource, expect in (("get", "pods", "yes"), ("create", "events.events.k8s.io", "yes"),
                                   ("list", "pods", "no"), ("get", "secrets", "no")):
        got = kubectl("auth", "can-i", verb, resource, "-n", team, f"--as={sa}", check=False).stdout.strip()
        assert got == expect, (verb, resource, got)


@pytest.mark.parametrize("team", [{"grants": False}], indirect=True)
def test_without_the_grants_the_tracer_keeps_container_ids(team):
    apply(pod("web", script="/bin/uname; sleep 3600"), namespace=team)
    wait_ready(team, "web")
    uname = eventually("uname in the tracer's log", lambda: [
        e for e in tracer_events(team, "web", names=False) if e.get("comm") == "uname"])
    container = uname[0]["container"]
    assert re.fullmatch(r"[0-9a-f]{64}", container), container
    # The container log holds the tracer's stderr too.
    assert "not allowed to read the own pod" in kubectl("logs", "-n", team, "web", "-c", TRACER).stdout
