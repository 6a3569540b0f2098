"""SELinux and AppArmor options baseline allows, which the tracer does not get.

The injector sets no SELinux or AppArmor option on the tracer. Baseline
allows the SELinux types container_engine_t and container_kvm_t, any MCS
level, and Localhost AppArmor profiles: each loosens the confinement of a
container that holds CAP_BPF. The tracer's effective options (its own, else
the pod's; the legacy AppArmor annotation in between) must not be any of
those; app containers keep everything baseline allows.
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

APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _sc(pod, name):
    return setup.tracer_of(pod, name)["securityContext"]


def _pod_sc(pod):
    return pod["spec"].setdefault("securityContext", {})


def _annotate(pod, container, value):
    pod["metadata"].setdefault("annotations", {})[APPARMOR_ANNOTATION + container] = value


ALL_CATEGORIES = "s0-s0:c0.c1023"

# (what the message says, the change)
LOOSENINGS = {
    "engine type": ("SELinux type, from its securityContext, is container_engine_t",
                    lambda p, n: _sc(p, n).update(seLinuxOptions={"type": "container_engine_t"})),
    "kvm type": ("SELinux type, from its securityContext, is container_kvm_t",
                 lambda p, n: _sc(p, n).update(seLinuxOptions={"type": "container_kvm_t"})),
    "all categories": ("SELinux level, from its securityContext, is " + ALL_CATEGORIES,
                       lambda p, n: _sc(p, n).update(seLinuxOptions={"level": ALL_CATEGORIES})),
    "category range": ("SELinux level, from its securityContext, is s0:c0.c1023",
                       lambda p, n: _sc(p, n).update(seLinuxOptions={"type": "container_t", "level": "s0:c0.c1023"})),
    "three categories": ("SELinux level, from its securityContext, is s0:c1,c2,c3",
                         lambda p, n: _sc(p, n).update(seLinuxOptions={"level": "s0:c1,c2,c3"})),
    "other sensitivity": ("SELinux level, from its securityContext, is s1:c1,c2",
                          lambda p, n: _sc(p, n).update(seLinuxOptions={"level": "s1:c1,c2"})),
    "Localhost AppArmor field": ("Localhost AppArmor profile", lambda p, n: _sc(p, n).update(
        appArmorProfile={"type": "Localhost", "localhostProfile": "k8s-apparmor-example-allow-write"})),
    "Localhost AppArmor annotation": ("Localhost AppArmor profile",
                                      lambda p, n: _annotate(p, n, "localhost/k8s-apparmor-example-allow-write")),
    # Pod-level options reach the tracer, which sets none of its own.
    "pod engine type": ("SELinux type, from the pod, is container_engine_t",
                        lambda p, n: _pod_sc(p).update(seLinuxOptions={"type": "container_engine_t"})),
    "pod kvm type": ("SELinux type, from the pod, is container_kvm_t",
                     lambda p, n: _pod_sc(p).update(seLinuxOptions={"type": "container_kvm_t"})),
    "pod all categories": ("SELinux level, from the pod, is " + ALL_CATEGORIES,
                           lambda p, n: _pod_sc(p).update(seLinuxOptions={"level": ALL_CATEGORIES})),
    "pod Localhost AppArmor": ("inherit the pod's Localhost AppArmor profile", lambda p, n: _pod_sc(p).update(
        appArmorProfile={"type": "Localhost", "localhostProfile": "k8s-apparmor-example-allow-write"})),
}


@pytest.mark.parametrize("way", ["CREATE", "UPDATE"])
@pytest.mark.parametrize("case", list(LOOSENINGS))
@pytest.mark.parametrize("form", list(FORMS))
def test_options_that_loosen_the_tracer_are_refused(form, case, way, installs, injected):
    install, good = installs[form], injected[form]
    said, change = LOOSENINGS[case]
    bad = copy.deepcopy(good)
    change(bad, install.tracer_name)
    verdict = install.create(bad) if way == "CREATE" else install.update(good, bad)
    assert not verdict.allowed
    # Baseline allows each: the tracer is refused for losing its exception.
    assert {check_of(m) for m in verdict.messages} <= {"capabilities", "seccomp"}, verdict.messages
    capabilities = [m for m in verdict.messages if check_of(m) == "capabilities"]
    assert capabilities and "is not the tracer as the injector writes it" in capabilities[0]
    assert said in capabilities[0], capabilities[0]
    if case.startswith("pod "):
        assert "not on the pod" in capabilities[0]
    assert install.create(bad, namespace=setup.OPEN_NS).allowed


def _app(pod):
    return pod["spec"]["containers"][0]


# What the tracer may still have: its own confinement unchanged or
# narrower, and pod-level options that do not loosen it.
KEPT_FOR_THE_TRACER = {
    "its own container_t": lambda p, n: _sc(p, n).update(seLinuxOptions={"type": "container_t"}),
    # OpenShift's restricted SCCs give every pod of a namespace its pair.
    "pod two categories": lambda p, n: _pod_sc(p).update(seLinuxOptions={"level": "s0:c26,c5"}),
    "pod one category": lambda p, n: _pod_sc(p).update(seLinuxOptions={"level": "s0:c7"}),
    "pod RuntimeDefault AppArmor": lambda p, n: _pod_sc(p).update(appArmorProfile={"type": "RuntimeDefault"}),
    "runtime/default annotation": lambda p, n: _annotate(p, n, "runtime/default"),
    # The tracer's own profile wins over the pod's.
    "pod Localhost, tracer RuntimeDefault": lambda p, n: (
        _pod_sc(p).update(appArmorProfile={"type": "Localhost", "localhostProfile": "app"}),
        _sc(p, n).update(appArmorProfile={"type": "RuntimeDefault"})),
    "pod Localhost, tracer annotated runtime/default": lambda p, n: (
        _pod_sc(p).update(appArmorProfile={"type": "Localhost", "localhostProfile": "app"}),
        _annotate(p, n, "runtime/default")),
    # The tracer's own seLinuxOptions replace the pod's as a whole.
    "pod engine type, tracer its own": lambda p, n: (
        _pod_sc(p).update(seLinuxOptions={"type": "container_engine_t"}),
        _sc(p, n).update(seLinuxOptions={"type": "container_t"})),
    # Baseline's own options for the app containers.
    "app engine type": lambda p, n: _app(p)["securityContext"].update(seLinuxOptions={"type": "container_engine_t"}),
    "app kvm type": lambda p, n: _app(p)["securityContext"].update(seLinuxOptions={"type": "container_kvm_t"}),
    "app all categories": lambda p, n: _app(p)["securityContext"].update(seLinuxOptions={"level": ALL_CATEGORIES}),
    "app Localhost AppArmor": lambda p, n: _app(p)["securityContext"].update(
        appArmorProfile={"type": "Localhost", "localhostProfile": "app"}),
    "app localhost annotation": lambda p, n: _annotate(p, "web", "localhost/app"),
}


@pytest.mark.parametrize("case", list(KEPT_FOR_THE_TRACER))
@pytest.mark.parametrize("form", list(FORMS))
def test_what_does_not_loosen_the_tracer_is_admitted(form, case, installs, injected):
    install = installs[form]
    pod = copy.deepcopy(injected[form])
    KEPT_FOR_THE_TRACER[case](pod, install.tracer_name)
    verdict = install.create(pod)
    assert verdict.allowed, verdict.messages
