"""The tracer exactly as the injector writes it is the one exception, and nothing else is.

A pod injected by the real `linnix-injector` with the chart's config (both
tracer forms, service account token mounted as the API server does) is
admitted on pod CREATE, UPDATE and pods/ephemeralcontainers; every way of
changing the tracer, copying it, or giving its privileges to another
container is refused on each of those ways in, with a message that says why.
kubectl exec and attach into the tracer are refused. The policies are the
ones Helm renders, evaluated with Google's CEL runtime (admission_cel).
"""

from __future__ import annotations

import copy

import pytest

try:
    from . import policy_setup as setup
except ImportError:
    import policy_setup as setup

FORMS = setup.FORMS
check_of = setup.check_of
installs = setup.installs
injected = setup.injected


# --------------------------------------------------------------------------
# The tracer exactly as the injector writes it, and nothing else


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


def test_the_token_volume_may_carry_more_certificates(installs, injected):
    """OpenShift adds its service CA to the token volume: still the exact
    tracer, since nothing in that volume is executable."""
    for form, install in installs.items():
        pod = copy.deepcopy(injected[form])
        _token_volume(pod, install.tracer_name)["projected"]["sources"].append(
            {"configMap": {"name": "openshift-service-ca.crt",
                           "items": [{"key": "service-ca.crt", "path": "service-ca.crt"}]}})
        assert install.create(pod).allowed, form


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


def _token_volume(pod, name):
    (mount,) = _tracer(pod, name)["volumeMounts"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    return volume


def executable_in_the_token_volume(pod, name):
    """A team's own ConfigMap projected beside the token as an executable
    file: anything exec'd in the tracer would run it with CAP_BPF and
    CAP_PERFMON."""
    _token_volume(pod, name)["projected"]["sources"].append(
        {"configMap": {"name": "tools", "items": [{"key": "busybox", "path": "busybox", "mode": 0o755}]}})


def executable_token_volume_by_default(pod, name):
    _token_volume(pod, name)["projected"]["defaultMode"] = 0o755


def other_form(pod, name):
    """The tracer in the other list than the configured form puts it: a
    regular container of a native-sidecar release (then the only app
    container of a pod, it is where an exec without a container name lands),
    or a native sidecar of a regular-container release."""
    tracer = _tracer(pod, name)
    spec = pod["spec"]
    if tracer in spec.get("initContainers", []):
        spec["initContainers"].remove(tracer)
        if not spec["initContainers"]:
            del spec["initContainers"]
        del tracer["restartPolicy"]
        spec["containers"].append(tracer)
    else:
        spec["containers"].remove(tracer)
        tracer["restartPolicy"] = "Always"
        spec.setdefault("initContainers", []).insert(0, tracer)


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
    # The same image to a runtime, another string to the policy: refused
    # rather than guessed at.
    "same-image-with-its-registry": lambda p, n: _tracer(p, n).update(image="docker.io/" + _tracer(p, n)["image"]),
    "trace-command-args": lambda p, n: _tracer(p, n).update(args=["trace", "--", "/bin/sh", "-c", "id"]),
    "extra-arg": lambda p, n: _tracer(p, n)["args"].append("--max-events-per-sec=0"),
    "no-args": lambda p, n: _tracer(p, n).pop("args"),
    "command": lambda p, n: _tracer(p, n).update(command=["/linnix-sidecar"]),
    "extra-volume-mount": mount_scratch,
    "token-path-from-a-secret": token_from_a_secret,
    "writable-token-mount": writable_token,
    "token-mount-sub-path": lambda p, n: _tracer(p, n)["volumeMounts"][0].update(subPath="token"),
    "token-mount-propagation": lambda p, n: _tracer(p, n)["volumeMounts"][0].update(
        mountPropagation="HostToContainer"),
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
    "other-form": other_form,
    "executable-in-the-token-volume": executable_in_the_token_volume,
    "executable-token-volume-by-default": executable_token_volume_by_default,
    "working-dir": lambda p, n: _tracer(p, n).update(workingDir="/proc/1/root"),
    "stdin": lambda p, n: _tracer(p, n).update(stdin=True, stdinOnce=True),
    "tty": lambda p, n: _tracer(p, n).update(tty=True),
    "termination-message-path": lambda p, n: _tracer(p, n).update(terminationMessagePath="/linnix-sidecar"),
    # The runtimes accept these spellings (containerd and CRI-O upper-case
    # and prefix CAP_); the policy, like Pod Security, knows only the exact
    # names, so they are other capabilities: refused, never exempt.
    "cap-prefixed-capabilities": lambda p, n: _sc(p, n)["capabilities"].update(add=["CAP_BPF", "CAP_PERFMON"]),
    "lower-case-capabilities": lambda p, n: _sc(p, n)["capabilities"].update(add=["bpf", "perfmon"]),
    "duplicate-capability": lambda p, n: _sc(p, n)["capabilities"].update(add=["BPF", "BPF"]),
    "add-all": lambda p, n: _sc(p, n)["capabilities"].update(add=["BPF", "PERFMON", "all"]),
    "lower-case-drop-all": lambda p, n: _sc(p, n)["capabilities"].update(drop=["all"]),
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


def test_the_order_of_the_tracers_capabilities_does_not_matter(installs, injected):
    for form, install in installs.items():
        pod = copy.deepcopy(injected[form])
        _sc(pod, install.tracer_name)["capabilities"]["add"] = ["PERFMON", "BPF"]
        assert install.create(pod).allowed, form


# What baseline refuses to any container is refused to the exact tracer too,
# and the message names that check alone: the tracer keeps its exception.
BASELINE_FOR_THE_TRACER = {
    "host port": ("host ports", lambda p, n: _tracer(p, n)["ports"][0].update(hostPort=9464)),
    "unmasked /proc": ("/proc mount type", lambda p, n: _sc(p, n).update(procMount="Unmasked")),
    "SELinux spc_t": ("SELinux", lambda p, n: _sc(p, n).update(seLinuxOptions={"type": "spc_t"})),
    "SELinux user": ("SELinux", lambda p, n: _sc(p, n).update(seLinuxOptions={"user": "system_u"})),
    "AppArmor field": ("AppArmor", lambda p, n: _sc(p, n).update(appArmorProfile={"type": "Unconfined"})),
    "AppArmor annotation": ("AppArmor", lambda p, n: p["metadata"].setdefault("annotations", {}).update(
        {f"container.apparmor.security.beta.kubernetes.io/{n}": "unconfined"})),
    "Windows HostProcess": ("Windows HostProcess", lambda p, n: _sc(p, n).update(
        windowsOptions={"hostProcess": True})),
    "startup probe host": ("host probes and lifecycle hooks", lambda p, n: _tracer(p, n).setdefault(
        "startupProbe", {"httpGet": {"port": 9464}})["httpGet"].update(host="169.254.169.254")),
    # Pod-level settings that every container, the tracer's neighbours
    # included, would inherit.
    "pod seccomp Unconfined": ("seccomp", lambda p, n: p["spec"].setdefault("securityContext", {}).update(
        seccompProfile={"type": "Unconfined"})),
    "pod AppArmor Unconfined": ("AppArmor", lambda p, n: p["spec"].setdefault("securityContext", {}).update(
        appArmorProfile={"type": "Unconfined"})),
    "pod sysctl": ("sysctls", lambda p, n: p["spec"].setdefault("securityContext", {}).update(
        sysctls=[{"name": "kernel.core_pattern", "value": "|/tmp/x"}])),
    "host PID": ("host namespaces", lambda p, n: p["spec"].update(hostPID=True)),
}


@pytest.mark.parametrize("case", list(BASELINE_FOR_THE_TRACER))
@pytest.mark.parametrize("form", list(FORMS))
def test_baseline_holds_for_the_tracer_too(form, case, installs, injected):
    install = installs[form]
    check, change = BASELINE_FOR_THE_TRACER[case]
    pod = copy.deepcopy(injected[form])
    change(pod, install.tracer_name)
    verdict = install.create(pod)
    assert not verdict.allowed
    assert {check_of(m) for m in verdict.messages} == {check}, verdict.messages


@pytest.mark.parametrize("add", [["BPF"], ["bpf"], ["CAP_BPF"], ["PERFMON"], ["SYS_ADMIN"], ["CAP_SYS_ADMIN"],
                                 ["all"], ["ALL"], ["SYS_PTRACE"], ["NET_RAW"]])
def test_app_containers_get_no_capability_beyond_baselines_in_any_spelling(add, installs, injected):
    for form, install in installs.items():
        pod = copy.deepcopy(injected[form])
        pod["spec"]["containers"][0]["securityContext"]["capabilities"] = {"add": add}
        verdict = install.create(pod)
        assert not verdict.allowed
        assert {check_of(m) for m in verdict.messages} == {"capabilities"}


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
# kubectl exec and attach


@pytest.mark.parametrize("subresource", ["exec", "attach"])
def test_no_exec_or_attach_into_the_tracer(subresource, installs):
    for install in installs.values():
        verdict = install.connect("web", install.tracer_name, subresource)
        assert not verdict.allowed
        assert "takes no exec or attach" in verdict.messages[0]
        assert install.connect("web", "web", subresource).allowed
        # Outside guarded namespaces this is RBAC's business alone.
        assert install.connect("web", install.tracer_name, subresource, namespace=setup.OPEN_NS).allowed


@pytest.mark.parametrize("subresource", ["exec", "attach"])
def test_exec_and_attach_must_name_the_container(subresource, installs):
    """Without a container name the API server picks the pod's only app
    container, after admission: in a regular-container release, a pod whose
    only app container is the exact tracer would take the exec in the
    tracer. kubectl always sends the name."""
    install = installs["regular-container"]
    (tracer,) = [c for c in install.inject(setup.APP_POD)[0]["spec"]["containers"]
                 if c["name"] == install.tracer_name]
    lone = setup.with_service_account_token({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lone"},
        "spec": {"shareProcessNamespace": True, "containers": [tracer]},
    })
    assert install.create(lone).allowed, "the exact tracer alone is still the exact tracer"
    assert setup.exec_target(lone, None) == install.tracer_name
    for install in installs.values():
        verdict = install.connect("lone", None, subresource)
        assert not verdict.allowed
        assert "must name the container" in verdict.messages[0]
        assert install.connect("lone", None, subresource, namespace=setup.OPEN_NS).allowed


def test_exec_follows_the_tracers_configured_name():
    install = setup.Installed({"sidecar": {"name": "tracer"}})
    assert not install.connect("web", "tracer").allowed
    assert install.connect("web", "linnix-tracer").allowed
