"""Which namespaces are guarded, and why no label change can open one up.

A namespace is guarded when it carries sidecar.linnix.io/guard=baseline; the
pod policy's binding selects exactly that label. It then enforces Pod
Security privileged (so the tracer passes Pod Security admission) and warns
and audits at baseline. The rule to hold: removing a linnix label never gives
a namespace more than its own Pod Security level allows. The chart's second
policy makes the guard label stick: a namespace update that drops it (or
changes it) is refused unless the same update makes the namespace enforce
baseline or restricted. These tests evaluate the rendered policies with
Google's CEL runtime, on namespace CREATE and UPDATE requests.
"""

from __future__ import annotations

import copy
import itertools

import pytest

try:
    from . import policy_setup as setup
    from .admission_cel import Request
except ImportError:
    import policy_setup as setup
    from admission_cel import Request


@pytest.fixture(scope="module")
def install() -> setup.Installed:
    return setup.Installed()


@pytest.fixture(scope="module")
def privileged_pod() -> dict:
    return setup.load(setup.FIXTURES / "fail" / "privileged0.yaml")


def guarded(name: str = "team-b") -> dict:
    return setup.namespace(name, setup.GUARDED_LABELS, {"sidecar.linnix.io/inject": "true"})


def update_namespace(install: setup.Installed, old: dict, new: dict, subresource: str = ""):
    return install.admission.review(
        Request("UPDATE", new, old, resource="namespaces", subresource=subresource, kind="Namespace",
                username="kubernetes-admin")
    )


def create_namespace(install: setup.Installed, ns: dict):
    return install.admission.review(
        Request("CREATE", ns, resource="namespaces", kind="Namespace", username="kubernetes-admin")
    )


def with_labels(ns: dict, **changes: str | None) -> dict:
    """`changes` maps label keys (with _ for / and -) to a value, or None to remove."""
    ns = copy.deepcopy(ns)
    for key, value in changes.items():
        if value is None:
            ns["metadata"]["labels"].pop(key, None)
        else:
            ns["metadata"]["labels"][key] = value
    return ns


GUARD = setup.GUARD_LABEL
ENFORCE = setup.ENFORCE


def test_the_guard_label_selects_the_namespace(install, privileged_pod):
    assert not install.create(privileged_pod, namespace=setup.TEAM_NS).allowed
    # A namespace that enforces privileged without the guard gets what its
    # Pod Security level says, as if linnix were not installed.
    assert install.create(privileged_pod, namespace=setup.OPEN_NS).allowed


def test_removing_the_guard_alone_is_refused(install):
    old = guarded()
    verdict = update_namespace(install, old, with_labels(old, **{GUARD: None}))
    assert not verdict.allowed
    assert "may only be removed together with" in verdict.messages[0]
    verdict = update_namespace(install, old, with_labels(old, **{GUARD: None, ENFORCE: None}))
    assert not verdict.allowed


@pytest.mark.parametrize("subresource", ["status", "finalize"])
def test_nor_through_a_subresource(install, subresource):
    old = guarded()
    assert not update_namespace(install, old, with_labels(old, **{GUARD: None}), subresource).allowed
    # The namespace controller's own finalize and status updates change no label.
    finalized = copy.deepcopy(old)
    finalized["spec"] = {"finalizers": []}
    finalized["status"] = {"phase": "Terminating"}
    assert update_namespace(install, old, finalized, subresource).allowed


def test_the_guard_goes_with_a_stricter_enforce_level(install):
    old = guarded()
    for level in ("baseline", "restricted"):
        assert update_namespace(install, old, with_labels(old, **{GUARD: None, ENFORCE: level})).allowed


def test_the_guard_has_one_value(install):
    old = guarded()
    assert not update_namespace(install, old, with_labels(old, **{GUARD: "off"})).allowed
    assert not update_namespace(install, old, with_labels(old, **{GUARD: "Baseline"})).allowed
    typo = setup.namespace("team-c", {ENFORCE: "privileged", GUARD: "true"})
    verdict = create_namespace(install, typo)
    assert not verdict.allowed and "one value, baseline" in verdict.messages[0]
    assert create_namespace(install, guarded("team-c")).allowed


def test_other_namespace_changes_are_untouched(install):
    old = guarded()
    # Adding a guard, changing unrelated labels, removing the opt-in.
    plain = setup.namespace("team-d", {ENFORCE: "privileged"})
    assert update_namespace(install, plain, with_labels(plain, **{GUARD: "baseline"})).allowed
    assert update_namespace(install, old, with_labels(old, cost_center="42")).allowed
    dropped = copy.deepcopy(old)
    del dropped["metadata"]["annotations"]["sidecar.linnix.io/inject"]
    assert update_namespace(install, old, dropped).allowed
    # Lowering warn/audit or removing enforce does not unguard either: the
    # binding selects on the guard label alone.
    assert update_namespace(install, old, with_labels(old, **{ENFORCE: None,
        "pod-security.kubernetes.io/warn": None, "pod-security.kubernetes.io/audit": None})).allowed
    assert update_namespace(install, plain, with_labels(plain, cost_center="42")).allowed


def linnix_keys(ns: dict) -> list[tuple[str, str]]:
    meta = ns["metadata"]
    return [("labels", k) for k in meta.get("labels", {}) if "linnix.io/" in k] + [
        ("annotations", k) for k in meta.get("annotations", {}) if "linnix.io/" in k
    ]


def test_removing_linnix_labels_never_gives_more_than_pod_security_allows(install, privileged_pod):
    """Every combination of linnix labels and annotations removed from a
    guarded namespace, with or without a change of its enforce level: either
    the change is refused, or privileged pods are still refused afterwards (by
    the guard, or by Pod Security itself)."""
    old = guarded()
    keys = linnix_keys(old)
    assert ("labels", GUARD) in keys and ("annotations", "sidecar.linnix.io/inject") in keys
    tried = 0
    for n in range(1, len(keys) + 1):
        for removed in itertools.combinations(keys, n):
            for enforce in ("privileged", None, "baseline", "restricted"):
                new = copy.deepcopy(old)
                for section, key in removed:
                    del new["metadata"][section][key]
                if enforce is None:
                    new["metadata"]["labels"].pop(ENFORCE)
                else:
                    new["metadata"]["labels"][ENFORCE] = enforce
                tried += 1
                if not update_namespace(install, old, new).allowed:
                    continue
                level = new["metadata"]["labels"].get(ENFORCE)
                if level in ("baseline", "restricted"):
                    continue  # Pod Security enforces baseline or more itself.
                install.cluster.namespaces[new["metadata"]["name"]] = new
                try:
                    assert not install.create(privileged_pod, namespace="team-b").allowed, (removed, enforce)
                finally:
                    del install.cluster.namespaces["team-b"]
    assert tried == (2 ** len(keys) - 1) * 4


def documented_label_commands(text: str) -> list[dict[str, str | None]]:
    """The `kubectl label namespace …` commands of a document (continuation
    lines joined), each as label -> value (None for `key-`)."""
    text = text.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("kubectl label namespace"):
            continue
        labels: dict[str, str | None] = {}
        for word in line.split()[4:]:
            if word.startswith("-") or word.startswith("#"):
                continue
            if "=" in word:
                key, value = word.split("=", 1)
                labels[key] = value
            elif word.endswith("-"):
                labels[word[:-1]] = None
        commands.append(labels)
    return commands


def test_the_documented_commands_guard_and_unguard(install):
    docs = [
        setup.ROOT / "README.md",
        setup.ROOT / "charts" / "linnix-injector" / "README.md",
        setup.NAMESPACE_CHART / "README.md",
        setup.NAMESPACE_CHART / "templates" / "NOTES.txt",
        setup.INJECTOR_CHART / "templates" / "NOTES.txt",
    ]
    guards = lifts = 0
    for doc in docs:
        for labels in documented_label_commands(doc.read_text()):
            if labels.get(GUARD) == "baseline":
                guards += 1
                assert labels == setup.GUARDED_LABELS, doc
                # The one command is one update, admitted from a plain namespace.
                plain = setup.namespace("team-e", {})
                new = copy.deepcopy(plain)
                new["metadata"]["labels"].update(labels)
                assert update_namespace(install, plain, new).allowed
            elif GUARD in labels and labels[GUARD] is None:
                lifts += 1
                new = guarded()
                for key, value in labels.items():
                    if value is None:
                        new["metadata"]["labels"].pop(key)
                    else:
                        new["metadata"]["labels"][key] = value
                assert update_namespace(install, guarded(), new).allowed, doc
    assert guards >= 4 and lifts >= 1
