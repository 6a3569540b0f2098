"""The injector chart's pod admission policy, evaluated with Google's CEL runtime.

The policy and binding are the ones Helm renders from the chart; their CEL
runs unchanged on `cel-expr-python` through `admission_cel`, which applies
them as the API server does. Pods are Kubernetes' own Pod Security fixtures
(baseline, policy version v1.37) as they are and after the real
`linnix-injector inject --all` with the chart's rendered config, in both
tracer forms (native sidecar and regular container), with and without the
service account token mount that the API server adds before validating
admission. Every `pass` pod must be admitted and every `fail` pod rejected
for the fixture's own reason. The parameters must agree with what the
injector writes. Tampered tracers: test_tracer_exception.py.
"""

from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest
import yaml

try:
    from . import policy_setup as setup
except ImportError:
    import policy_setup as setup

FORMS = setup.FORMS
check_of = setup.check_of
installs = setup.installs
injected = setup.injected


# --------------------------------------------------------------------------
# The rendered objects


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
@pytest.mark.parametrize("form", list(FORMS))
def test_policies_and_bindings_are_valid_kubernetes(form, version):
    objects = setup.render(FORMS[form])
    kinds = [o["kind"] for o in objects]
    assert kinds.count("ValidatingAdmissionPolicy") == 3
    assert kinds.count("ValidatingAdmissionPolicyBinding") == 3
    for obj in objects:
        if obj["kind"].startswith("ValidatingAdmissionPolicy") or obj["kind"] == "ConfigMap":
            kubernetes_validate.validate(obj, version, strict=True)


def test_kubernetes_before_1_30_has_no_v1_policies():
    """kubernetes-validate ships schemas for 1.25 to 1.37; the v1 kinds first
    appear in 1.30, the chart's minimum."""
    policy = setup.of_kind(setup.render(), "ValidatingAdmissionPolicy")[0]
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(policy, "1.29.0", strict=True)
    chart = yaml.safe_load((setup.INJECTOR_CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_the_policy_can_be_switched_off():
    objects = setup.render({"policy": {"enabled": False}})
    assert not [o for o in objects if o["kind"].startswith("ValidatingAdmissionPolicy")]


def test_binding_denies_takes_parameters_from_the_release_and_selects_the_guard():
    objects = setup.render()
    policy = {o["metadata"]["name"]: o for o in setup.of_kind(objects, "ValidatingAdmissionPolicy")}
    (binding,) = [
        b for b in setup.of_kind(objects, "ValidatingAdmissionPolicyBinding")
        if b["spec"]["policyName"].endswith("-pod-baseline")
    ]
    pod_policy = policy[binding["spec"]["policyName"]]
    config_map = setup.only(objects, "ConfigMap")
    assert pod_policy["spec"]["failurePolicy"] == "Fail"
    assert pod_policy["spec"]["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["paramRef"] == {
        "name": config_map["metadata"]["name"],
        "namespace": setup.RELEASE_NS,
        "parameterNotFoundAction": "Deny",
    }
    assert binding["spec"]["matchResources"] == {
        "namespaceSelector": {"matchLabels": {setup.GUARD_LABEL: "baseline"}}
    }
    (rule,) = pod_policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert rule["resources"] == ["pods", "pods/ephemeralcontainers"]


# Functions the shipped CEL may call: standard CEL, optional types and the
# strings extension, all of which both Kubernetes (cel-go) and cel-expr-python
# (cel-cpp) have. Anything else is a Kubernetes-only library or a cel-cpp
# extra, and would make the tests here say nothing about the API server.
PORTABLE_FUNCTIONS = {
    "all", "exists", "exists_one", "filter", "map", "has", "size", "orValue",
    "startsWith", "split", "join",
}


def test_the_policies_use_only_cel_both_runtimes_have():
    for policy in setup.of_kind(setup.render(), "ValidatingAdmissionPolicy"):
        spec = policy["spec"]
        expressions = (
            [m["expression"] for m in spec.get("matchConditions", [])]
            + [v["expression"] for v in spec.get("variables", [])]
            + [v["expression"] for v in spec["validations"]]
            + [v["messageExpression"] for v in spec["validations"] if "messageExpression" in v]
        )
        for expression in expressions:
            without_strings = re.sub(r"'[^']*'", "''", expression)
            called = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", without_strings))
            assert called <= PORTABLE_FUNCTIONS, (called - PORTABLE_FUNCTIONS, expression)
            assert "authorizer" not in without_strings


# --------------------------------------------------------------------------
# Kubernetes' Pod Security fixtures, plain and injected


VARIANTS = ["plain", "plain+token", "native-sidecar", "native-sidecar+token", "regular-container", "regular-container+token"]
PASS = setup.fixtures("pass")
FAIL = setup.fixtures("fail")


@pytest.fixture(scope="module")
def injected_fixtures(installs) -> dict[tuple[str, str], dict]:
    """Every fixture through `inject --all`, one List per tracer form."""
    paths = PASS + FAIL
    pods = [setup.load(p) for p in paths]
    out = {}
    for form, install in installs.items():
        for path, injected in zip(paths, install.inject(*pods)):
            out[(form, f"{path.parent.name}/{path.name}")] = injected
    return out


def skipped_by_injector(pod: dict) -> bool:
    spec = pod["spec"]
    host_process = [c for c in spec.get("initContainers", []) + spec["containers"] + [spec]
                    if (c.get("securityContext") or {}).get("windowsOptions", {}).get("hostProcess") is True]
    return (spec.get("hostUsers") is False or spec.get("hostPID") is True
            or (spec.get("os") or {}).get("name") == "windows" or bool(host_process))


def variant_pod(path, variant: str, installs, injected_fixtures) -> tuple[setup.Installed, dict]:
    form = variant.removesuffix("+token")
    install = installs["native-sidecar" if form == "plain" else form]
    if form == "plain":
        pod = setup.load(path)
    else:
        pod = injected_fixtures[(form, f"{path.parent.name}/{path.name}")]
        tracer = [c for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
                  if c["name"] == install.tracer_name]
        if skipped_by_injector(setup.load(path)):
            # The injector skips user namespaces (rule 9), hostPID (8b) and
            # Windows pods (8c): the pod is admitted or rejected as it is.
            assert tracer == [] and pod == setup.load(path)
        else:
            assert len(tracer) == 1, pod
    if variant.endswith("+token"):
        pod = setup.with_service_account_token(pod)
    return install, pod


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", PASS, ids=lambda p: p.stem)
def test_baseline_pass_fixtures_are_admitted(path, variant, installs, injected_fixtures):
    install, pod = variant_pod(path, variant, installs, injected_fixtures)
    verdict = install.create(pod)
    assert verdict.allowed, verdict.messages
    assert verdict.evaluated, "the policy did not apply"


FAILED_CHECKS = {
    "apparmorprofile": {"AppArmor"},
    "capabilities_baseline": {"capabilities"},
    "hostnamespaces": {"host namespaces"},
    "hostpathvolumes": {"hostPath volumes"},
    "hostports": {"host ports"},
    "hostprobesandhostlifecycle": {"host probes and lifecycle hooks"},
    "privileged": {"privileged"},
    "procmount": {"/proc mount type"},
    "seccompprofile_baseline": {"seccomp"},
    "selinuxoptions": {"SELinux"},
    "sysctls": {"sysctls"},
    # These fixtures also set hostNetwork, which a HostProcess pod needs.
    "windowshostprocess": {"Windows HostProcess", "host namespaces"},
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", FAIL, ids=lambda p: p.stem)
def test_baseline_fail_fixtures_are_rejected_for_their_own_reason(path, variant, installs, injected_fixtures):
    install, pod = variant_pod(path, variant, installs, injected_fixtures)
    verdict = install.create(pod)
    assert not verdict.allowed
    expected = FAILED_CHECKS[path.stem.rstrip("0123456789")]
    assert {check_of(m) for m in verdict.messages} == expected, verdict.messages
    # The tracer itself is never the reason.
    assert not [m for m in verdict.messages if install.tracer_name in m], verdict.messages


def test_every_validation_can_fail(installs):
    install = installs["native-sidecar"]
    (policy,) = [p for p in install.admission.policies.values() if "pod-baseline" in p.name]
    failed = set()
    duplicate = copy.deepcopy(setup.APP_POD)
    duplicate["spec"]["initContainers"] = [{"name": "web", "image": "registry.local/init:1"}]
    for pod in [setup.load(p) for p in FAIL] + [duplicate]:
        failed |= {f.validation for f in install.create(pod).failures}
    assert failed == set(range(len(policy.validations)))


# --------------------------------------------------------------------------
# Parameters: the same values as the injector's config


PARAMETER_VALUES = {
    "defaults": {},
    "custom": {"sidecar": {
        "name": "tracer",
        "image": {"repository": "registry.local/linnix-sidecar", "tag": "1.2.3"},
        "args": ["--log-level=debug", "--max-events-per-sec=500"],
        "metricsPort": 9500,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/linnix-tracer.json"},
    }},
    "own-metrics-addr": {"sidecar": {"args": ["--metrics-addr=0.0.0.0:9464", "--threads"], "nativeSidecar": False}},
    "runtime-default": {"sidecar": {"seccompProfile": {"type": "RuntimeDefault"}}},
}


@pytest.mark.parametrize("values", list(PARAMETER_VALUES))
def test_parameters_agree_with_what_the_injector_writes(values):
    install = setup.Installed(PARAMETER_VALUES[values])
    data = install.config_map["data"]
    pod = install.inject(setup.APP_POD)[0]
    tracer = setup.tracer_of(pod, data["tracer.name"])
    assert data["tracer.name"] == yaml.safe_load(data["config.yaml"])["sidecar"]["name"]
    assert data["tracer.image"] == tracer["image"]
    assert data["tracer.args"].split("\n") == tracer["args"]
    native = tracer in pod["spec"].get("initContainers", [])
    assert data["tracer.nativeSidecar"] == ("true" if native else "false")
    profile = tracer["securityContext"]["seccompProfile"]
    assert data["tracer.seccompProfile.type"] == profile["type"]
    assert data["tracer.seccompProfile.localhostProfile"] == profile.get("localhostProfile", "")
    for candidate in (pod, setup.with_service_account_token(pod)):
        verdict = install.create(candidate)
        assert verdict.allowed, verdict.messages


def test_a_tracer_for_other_values_is_not_the_tracer():
    """Parameters are not decoration: a tracer injected with other values
    (another image) is refused by a release with the defaults."""
    other = setup.Installed(PARAMETER_VALUES["custom"])
    release = setup.Installed()
    pod = other.inject(setup.APP_POD)[0]
    renamed = copy.deepcopy(pod)
    setup.tracer_of(renamed, "tracer")["name"] = release.tracer_name
    assert not release.create(pod).allowed
    assert not release.create(renamed).allowed


def test_args_cannot_carry_line_breaks():
    import helm_python as helm

    with helm.Chart.load(setup.INJECTOR_CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"sidecar": {"args": ["--a\n--b"]}})


def test_missing_parameters_deny(injected):
    install = setup.Installed()
    install.cluster.objects.clear()
    verdict = install.create(injected["native-sidecar"])
    assert not verdict.allowed
    assert "no params found" in verdict.messages[0]
    # Only in guarded namespaces.
    assert install.create(injected["native-sidecar"], namespace=setup.OPEN_NS).allowed


def test_parameters_in_the_pods_namespace_are_ignored(injected):
    """A team that writes a ConfigMap of the same name in its own namespace
    does not choose the tracer's image."""
    evil = copy.deepcopy(setup.Installed().config_map)
    evil["metadata"]["namespace"] = setup.TEAM_NS
    evil["data"]["tracer.image"] = "registry.evil/shell:1"
    install = setup.Installed(extra_objects=[evil])
    pod = copy.deepcopy(injected["native-sidecar"])
    setup.tracer_of(pod, install.tracer_name)["image"] = "registry.evil/shell:1"
    assert not install.create(pod).allowed
    assert install.create(injected["native-sidecar"]).allowed


def test_damaged_parameters_fail_closed(injected):
    install = setup.Installed()
    del install.config_map["data"]["tracer.args"]
    verdict = install.create(injected["native-sidecar"])
    assert not verdict.allowed
    assert "resulted in error" in verdict.messages[0]

