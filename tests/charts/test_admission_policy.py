"""The injector chart's pod admission policy, evaluated with Google's CEL runtime.

The policy and binding are the ones Helm renders from the chart; their CEL
runs unchanged on `cel-expr-python` through `admission_cel`, which applies
them as the API server does. Pods are Kubernetes' own Pod Security fixtures
(baseline, policy version v1.37) as they are and after the real
`linnix-injector inject --all` with the chart's rendered config, in both
tracer forms (native sidecar and regular container), with and without the
service account token mount that the API server adds before validating
admission. Every `pass` pod must be admitted and every `fail` pod rejected
for the fixture's own reason; tampered tracers are rejected through every way
in (pod CREATE, UPDATE, pods/ephemeralcontainers).
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

FORMS = {"native-sidecar": {}, "regular-container": {"sidecar": {"nativeSidecar": False}}}


@pytest.fixture(scope="module", params=list(FORMS))
def installed(request) -> setup.Installed:
    return setup.Installed(FORMS[request.param])


@pytest.fixture(scope="module")
def installs() -> dict[str, setup.Installed]:
    return {form: setup.Installed(values) for form, values in FORMS.items()}


def check_of(message: str) -> str:
    """'Pod Security baseline, seccomp: …' -> 'seccomp'."""
    match = re.match(r"Pod Security baseline, ([^:]+):", message)
    assert match, f"not a baseline check's message: {message}"
    return match.group(1)


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


def variant_pod(path, variant: str, installs, injected_fixtures) -> tuple[setup.Installed, dict]:
    form = variant.removesuffix("+token")
    install = installs["native-sidecar" if form == "plain" else form]
    if form == "plain":
        pod = setup.load(path)
    else:
        pod = injected_fixtures[(form, f"{path.parent.name}/{path.name}")]
        tracer = [c for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
                  if c["name"] == install.tracer_name]
        if pod["spec"].get("hostUsers") is False:
            # The injector skips user namespaces (rule 9): the pod is admitted
            # or rejected as it is.
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
# The tracer exactly as the injector writes it, and nothing else


@pytest.fixture(scope="module")
def injected(installs) -> dict[str, dict]:
    """APP_POD injected in each form, with the service account token mounted."""
    return {form: setup.with_service_account_token(i.inject(setup.APP_POD)[0]) for form, i in installs.items()}


def test_the_injected_pod_is_admitted_in_every_way(installs, injected):
    for form, install in installs.items():
        pod = injected[form]
        assert install.create(pod).allowed, form
        changed = copy.deepcopy(pod)
        changed["spec"]["containers"][0]["image"] = "registry.local/web:2"
        assert install.update(pod, changed).allowed, form
        relabelled = copy.deepcopy(pod)
        relabelled["metadata"]["labels"] = {"app": "web"}
        assert install.update(pod, relabelled).allowed
        debug = {"name": "debugger-x8d2", "image": "registry.local/busybox:1", "stdin": True, "tty": True,
                 "targetContainerName": "web"}
        assert install.add_ephemeral(pod, debug).allowed, form


def _tracer(pod, name):
    return setup.tracer_of(pod, name)


def _sc(pod, name):
    return _tracer(pod, name)["securityContext"]


def _add_volume(pod, volume):
    pod["spec"].setdefault("volumes", []).append(volume)


def mount_scratch(pod, name):
    _add_volume(pod, {"name": "scratch", "emptyDir": {}})
    _tracer(pod, name)["volumeMounts"].append({"name": "scratch", "mountPath": "/scratch"})


def token_from_a_secret(pod, name):
    _add_volume(pod, {"name": "other-token", "secret": {"secretName": "ci-deployer-token"}})
    _tracer(pod, name)["volumeMounts"] = [
        {"name": "other-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}
    ]


def writable_token(pod, name):
    _tracer(pod, name)["volumeMounts"][0]["readOnly"] = False


def volume_device(pod, name):
    _add_volume(pod, {"name": "disk", "persistentVolumeClaim": {"claimName": "disk"}})
    _tracer(pod, name)["volumeDevices"] = [{"name": "disk", "devicePath": "/dev/xvdb"}]


def copy_under_another_name(pod, name):
    twin = copy.deepcopy(_tracer(pod, name))
    twin["name"] = "linnix-tracer-2"
    twin.pop("restartPolicy", None)
    twin.pop("startupProbe", None)
    pod["spec"]["containers"].append(twin)


def app_adds_bpf(pod, name):
    pod["spec"]["containers"][0]["securityContext"]["capabilities"] = {"add": ["BPF"]}


def app_copies_the_tracers_security_context(pod, name):
    pod["spec"]["containers"][0]["securityContext"] = copy.deepcopy(_sc(pod, name))


def plain_init_container(pod, name):
    tracer = _tracer(pod, name)
    for key in ("initContainers", "containers"):
        if tracer in pod["spec"].get(key, []):
            pod["spec"][key].remove(tracer)
    tracer.pop("restartPolicy", None)
    tracer.pop("startupProbe", None)
    pod["spec"].setdefault("initContainers", []).insert(0, tracer)


TAMPERS = {
    "other-image": lambda p, n: _tracer(p, n).update(image="registry.evil/linnix-sidecar:0.1.0"),
    "same-image-by-digest": lambda p, n: _tracer(p, n).update(image=_tracer(p, n)["image"] + "@sha256:" + "0" * 64),
    "trace-command-args": lambda p, n: _tracer(p, n).update(args=["trace", "--", "/bin/sh", "-c", "id"]),
    "extra-arg": lambda p, n: _tracer(p, n)["args"].append("--max-events-per-sec=0"),
    "no-args": lambda p, n: _tracer(p, n).pop("args"),
    "command": lambda p, n: _tracer(p, n).update(command=["/linnix-sidecar"]),
    "extra-volume-mount": mount_scratch,
    "token-path-from-a-secret": token_from_a_secret,
    "writable-token-mount": writable_token,
    "volume-device": volume_device,
    "env-from": lambda p, n: _tracer(p, n).update(envFrom=[{"configMapRef": {"name": "settings"}}]),
    "extra-env": lambda p, n: _tracer(p, n)["env"].append({"name": "RUST_LOG", "value": "trace"}),
    "env-from-a-secret": lambda p, n: _tracer(p, n)["env"][0].update(
        valueFrom={"secretKeyRef": {"name": "db", "key": "password"}}),
    "env-with-a-second-source": lambda p, n: _tracer(p, n)["env"][0]["valueFrom"].update(
        secretKeyRef={"name": "db", "key": "password"}),
    "another-capability": lambda p, n: _sc(p, n)["capabilities"]["add"].append("SYS_ADMIN"),
    "other-capabilities": lambda p, n: _sc(p, n)["capabilities"].update(add=["BPF", "SYS_ADMIN"]),
    "capabilities-kept": lambda p, n: _sc(p, n)["capabilities"].update(drop=[]),
    "privileged": lambda p, n: _sc(p, n).update(privileged=True),
    "privilege-escalation": lambda p, n: _sc(p, n).update(allowPrivilegeEscalation=True),
    "writable-root": lambda p, n: _sc(p, n).update(readOnlyRootFilesystem=False),
    "other-seccomp-profile": lambda p, n: _sc(p, n).update(
        seccompProfile={"type": "Localhost", "localhostProfile": "profiles/anything.json"}),
    "lifecycle-exec": lambda p, n: _tracer(p, n).update(
        lifecycle={"postStart": {"exec": {"command": ["/linnix-sidecar", "trace", "--", "/x"]}}}),
    "exec-startup-probe": lambda p, n: _tracer(p, n).update(
        startupProbe={"exec": {"command": ["/linnix-sidecar"]}}),
    "liveness-probe": lambda p, n: _tracer(p, n).update(livenessProbe={"exec": {"command": ["/linnix-sidecar"]}}),
    "copy-under-another-name": copy_under_another_name,
    "app-adds-bpf": app_adds_bpf,
    "app-copies-the-tracers-security-context": app_copies_the_tracers_security_context,
    "plain-init-container": plain_init_container,
}


@pytest.mark.parametrize("way", ["CREATE", "UPDATE"])
@pytest.mark.parametrize("tamper", list(TAMPERS))
@pytest.mark.parametrize("form", list(FORMS))
def test_tampered_tracers_are_rejected(form, tamper, way, installs, injected):
    install, good = installs[form], injected[form]
    bad = copy.deepcopy(good)
    TAMPERS[tamper](bad, install.tracer_name)
    assert bad != good
    verdict = install.create(bad) if way == "CREATE" else install.update(good, bad)
    assert not verdict.allowed
    checks = {check_of(m) for m in verdict.messages}
    assert checks & {"capabilities", "privileged", "seccomp"}, verdict.messages
    # Outside a guarded namespace the same pod is only up to the namespace's
    # own Pod Security level (privileged): the policy does not apply there.
    assert install.create(bad, namespace=setup.OPEN_NS).allowed


@pytest.mark.parametrize("tamper", ["other-image", "trace-command-args", "command", "extra-volume-mount",
                                    "another-capability", "privileged", "env-from", "lifecycle-exec"])
def test_the_message_says_why_the_tracer_lost_its_exception(tamper, installs, injected):
    install = installs["native-sidecar"]
    bad = copy.deepcopy(injected["native-sidecar"])
    TAMPERS[tamper](bad, install.tracer_name)
    messages = install.create(bad).messages
    capabilities = [m for m in messages if check_of(m) == "capabilities"]
    assert capabilities, messages
    assert "container linnix-tracer must not add" in capabilities[0]
    assert "is not the tracer as the injector writes it" in capabilities[0]


def test_a_tracer_moved_into_ephemeral_containers_is_rejected(installs, injected):
    for form, install in installs.items():
        pod = injected[form]
        without = copy.deepcopy(pod)
        tracer = _tracer(without, install.tracer_name)
        for key in ("initContainers", "containers"):
            if tracer in without["spec"].get(key, []):
                without["spec"][key].remove(tracer)
        ephemeral = {k: v for k, v in tracer.items() if k not in ("restartPolicy", "startupProbe", "ports", "resources")}
        verdict = install.add_ephemeral(without, ephemeral)
        assert not verdict.allowed
        assert {"capabilities", "seccomp"} <= {check_of(m) for m in verdict.messages}


@pytest.mark.parametrize(
    "container",
    [
        {"name": "debugger", "image": "registry.local/busybox:1", "securityContext": {"privileged": True}},
        {"name": "debugger", "image": "registry.local/busybox:1",
         "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}},
        {"name": "debugger", "image": "registry.local/busybox:1",
         "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
    ],
    ids=["privileged", "sys-ptrace", "unconfined"],
)
def test_kubectl_debug_containers_are_held_to_baseline(container, installs, injected):
    for form, install in installs.items():
        assert not install.add_ephemeral(injected[form], container).allowed


def test_a_copy_of_the_tracer_as_a_debug_container_is_rejected(installs, injected):
    for form, install in installs.items():
        pod = injected[form]
        twin = {k: v for k, v in _tracer(pod, install.tracer_name).items()
                if k not in ("restartPolicy", "startupProbe", "ports", "resources")}
        twin["name"] = "debugger"
        verdict = install.add_ephemeral(pod, twin)
        assert not verdict.allowed
        assert any("container debugger must not add BPF, PERFMON" in m for m in verdict.messages)


def test_updates_that_change_nothing_baseline_checks_are_not_evaluated(installs):
    """A privileged pod from before the namespace was guarded keeps its label
    and finalizer updates; any change of its spec, or of an AppArmor
    annotation, is evaluated."""
    install = installs["native-sidecar"]
    legacy = setup.load(setup.FIXTURES / "fail" / "privileged0.yaml")
    relabelled = copy.deepcopy(legacy)
    relabelled["metadata"]["labels"] = {"app": "legacy"}
    relabelled["metadata"]["finalizers"] = ["example.com/cleanup"]
    verdict = install.update(legacy, relabelled)
    assert verdict.allowed and verdict.evaluated == []
    reimaged = copy.deepcopy(legacy)
    reimaged["spec"]["containers"][0]["image"] = "registry.k8s.io/pause:3.10"
    assert not install.update(legacy, reimaged).allowed
    unconfined = copy.deepcopy(relabelled)
    unconfined["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/container1": "unconfined"}
    assert not install.update(relabelled, unconfined).allowed
    compliant = setup.load(setup.FIXTURES / "pass" / "apparmorprofile0.yaml")
    dropped = copy.deepcopy(compliant)
    del dropped["metadata"]["annotations"]
    assert install.update(compliant, dropped).evaluated


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
    "own-metrics-addr": {"sidecar": {"args": ["--metrics-addr=127.0.0.1:9000", "--threads"], "nativeSidecar": False}},
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


# --------------------------------------------------------------------------
# kubectl exec and attach


@pytest.mark.parametrize("subresource", ["exec", "attach"])
def test_no_exec_or_attach_into_the_tracer(subresource, installs):
    for install in installs.values():
        verdict = install.connect("web", install.tracer_name, subresource)
        assert not verdict.allowed
        assert "takes no exec or attach" in verdict.messages[0]
        assert install.connect("web", "web", subresource).allowed
        assert install.connect("web", None, subresource).allowed
        # Outside guarded namespaces this is RBAC's business alone.
        assert install.connect("web", install.tracer_name, subresource, namespace=setup.OPEN_NS).allowed


def test_exec_follows_the_tracers_configured_name():
    install = setup.Installed(PARAMETER_VALUES["custom"])
    assert not install.connect("web", "tracer").allowed
    assert install.connect("web", "linnix-tracer").allowed
