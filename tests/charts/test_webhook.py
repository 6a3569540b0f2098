"""linnix-injector's chart: the objects each certificate mode renders, the
MutatingWebhookConfiguration, and how each mode provides the serving
certificate.
"""

from __future__ import annotations

import pathlib

import helm_python as helm
import pytest
import yaml

from chart_support import CA_PEM_B64, MODES, flags, injector_container, kinds, only, selector_matches, webhook
from conftest import INJECTOR_CHART, RELEASE_NS, TEAM_NS, render


# --------------------------------------------------------------------------
# What each mode renders


STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)

CORE_KINDS = [
    "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
    "MutatingWebhookConfiguration", "PodDisruptionBudget", "Service", "ServiceAccount",
]


@pytest.mark.parametrize(
    "mode,extra",
    [
        ("selfSigned", []),
        ("certManager", ["Certificate", "Certificate", "Issuer", "Issuer"]),
        ("certManagerIssuerRef", ["Certificate"]),
        ("existingSecret", []),
    ],
)
def test_rendered_kinds_per_mode(injector_chart, mode, extra):
    assert kinds(render(injector_chart, MODES[mode])) == sorted(CORE_KINDS + extra)


def test_every_object_carries_the_standard_labels(injector_chart, namespace_chart):
    objects = render(injector_chart, MODES["certManager"]) + render(
        namespace_chart, namespace=TEAM_NS
    )
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        missing = [key for key in STANDARD_LABELS if not labels.get(key)]
        assert missing == [], f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "linnix"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] in ("linnix-injector-0.1.0", "linnix-namespace-0.1.0")


def test_namespaced_objects_are_in_the_release_namespace(injector_chart):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for obj in render(injector_chart, MODES["certManager"]):
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == RELEASE_NS, obj["kind"]


def test_chart_metadata():
    meta = yaml.safe_load((INJECTOR_CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "linnix-injector"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"
    values = yaml.safe_load((INJECTOR_CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "linnix/linnix-injector"
    with helm.Chart.load(INJECTOR_CHART) as chart:
        assert injector_container(render(chart))["image"] == "linnix/linnix-injector:0.1.0"


# --------------------------------------------------------------------------
# MutatingWebhookConfiguration


@pytest.mark.parametrize("mode", ["selfSigned", "certManager", "existingSecret"])
def test_webhook_settings(injector_chart, mode):
    objects = render(injector_chart, MODES[mode])
    hook = webhook(objects)
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] == 5
    assert hook["sideEffects"] == "None"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    # The webhook name must be a fully qualified domain name.
    assert hook["name"].count(".") >= 2


@pytest.mark.parametrize("mode", ["selfSigned", "certManager", "existingSecret"])
def test_webhook_calls_the_service_on_mutate(injector_chart, mode):
    objects = render(injector_chart, MODES[mode])
    ref = webhook(objects)["clientConfig"]["service"]
    service = only(objects, "Service")
    assert ref["name"] == service["metadata"]["name"]
    assert ref["namespace"] == RELEASE_NS
    assert ref["path"] == "/mutate"
    https = next(p for p in service["spec"]["ports"] if p["port"] == ref["port"])
    assert ref["port"] == 443
    # The Service forwards to the container's HTTPS port, 8443.
    container = injector_container(objects)
    target = next(p for p in container["ports"] if p["name"] == https["targetPort"])
    assert target["containerPort"] == 8443
    assert flags(container["args"])["addr"] == ["0.0.0.0:8443"]
    metrics = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
    assert metrics["port"] == 9090
    target = next(p for p in container["ports"] if p["name"] == metrics["targetPort"])
    assert target["containerPort"] == 9090
    assert flags(container["args"])["metrics-addr"] == ["0.0.0.0:9090"]
    # The Service selects the injector's pods.
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels)


@pytest.mark.parametrize("release_ns", ["observability", "linnix-system"])
def test_namespace_selector_excludes_system_and_release_namespaces(injector_chart, release_ns):
    hook = webhook(render(injector_chart, namespace=release_ns))
    selector = hook["namespaceSelector"]
    assert selector["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", "kube-public", "kube-node-lease", release_ns],
        }
    ]
    for excluded in ("kube-system", "kube-public", "kube-node-lease", release_ns):
        assert not selector_matches(selector, {"kubernetes.io/metadata.name": excluded})
    assert selector_matches(selector, {"kubernetes.io/metadata.name": TEAM_NS})


def test_namespace_selector_takes_extra_exclusions_without_duplicates(injector_chart):
    values = {"webhook": {"excludeNamespaces": ["monitoring", "kube-system"]}}
    selector = webhook(render(injector_chart, values, namespace="kube-system"))[
        "namespaceSelector"
    ]
    (expr,) = selector["matchExpressions"]
    assert expr["values"] == ["kube-system", "kube-public", "kube-node-lease", "monitoring"]


def test_object_selector_leaves_out_the_injectors_own_pods(injector_chart):
    objects = render(injector_chart)
    selector = webhook(objects)["objectSelector"]
    injector_pod = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selector_matches(selector, injector_pod)
    # Ordinary pods, labelled or not, are sent to the injector ...
    assert selector_matches(selector, {})
    assert selector_matches(selector, {"app.kubernetes.io/name": "web", "app": "web"})
    # ... unless they opt out by label.
    assert not selector_matches(selector, {"app": "web", "sidecar.linnix.io/inject": "false"})


def test_object_selector_follows_name_override(injector_chart):
    objects = render(injector_chart, {"nameOverride": "tracer-injector"})
    injector_pod = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert injector_pod["app.kubernetes.io/name"] == "tracer-injector"
    assert not selector_matches(webhook(objects)["objectSelector"], injector_pod)


def test_webhook_settings_can_be_tuned(injector_chart):
    hook = webhook(
        render(injector_chart, {"webhook": {"failurePolicy": "Fail", "timeoutSeconds": 10}})
    )
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 10


# --------------------------------------------------------------------------
# Certificates


def test_self_signed_mode(injector_chart):
    objects = render(injector_chart, MODES["selfSigned"])
    mwc = only(objects, "MutatingWebhookConfiguration")
    container = injector_container(objects)
    args = flags(container["args"])
    assert container["args"][0] == "serve"
    assert args["self-signed"] == [""]
    assert args["webhook-config"] == [mwc["metadata"]["name"]]
    svc = only(objects, "Service")["metadata"]["name"]
    assert args["dns"] == [
        f"{svc}.{RELEASE_NS}.svc",
        f"{svc}.{RELEASE_NS}.svc.cluster.local",
    ]
    assert "tls-cert" not in args and "tls-key" not in args
    # The injector fills the caBundle itself; the chart must not set one
    # (an upgrade would otherwise overwrite the injector's CA).
    assert "caBundle" not in webhook(objects)["clientConfig"]
    assert "annotations" not in mwc["metadata"]
    volumes = only(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in volumes if "secret" in v]


def tls_volume(objects: list[dict]) -> tuple[dict, dict]:
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    container = injector_container(objects)
    args = flags(container["args"])
    assert "self-signed" not in args and "webhook-config" not in args and "dns" not in args
    (cert,) = args["tls-cert"]
    (key,) = args["tls-key"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(pathlib.PurePosixPath(cert).parent))
    assert str(pathlib.PurePosixPath(key).parent) == mount["mountPath"]
    # A subPath mount would never see the kubelet's rotated files.
    assert "subPath" not in mount
    assert mount.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    items = {i["key"]: i["path"] for i in volume["secret"].get("items", [])}
    if items:
        assert items["tls.crt"] == pathlib.PurePosixPath(cert).name
        assert items["tls.key"] == pathlib.PurePosixPath(key).name
    else:
        assert pathlib.PurePosixPath(cert).name == "tls.crt"
        assert pathlib.PurePosixPath(key).name == "tls.key"
    return volume, mount


def test_cert_manager_mode_with_its_own_ca(injector_chart):
    objects = render(injector_chart, MODES["certManager"])
    volume, _ = tls_volume(objects)
    issuers = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Issuer"}
    certs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Certificate"}
    # The serving certificate is the one whose Secret the pods mount.
    (serving,) = [c for c in certs.values() if c["spec"]["secretName"] == volume["secret"]["secretName"]]
    svc = only(objects, "Service")["metadata"]["name"]
    assert serving["spec"]["dnsNames"] == [
        f"{svc}.{RELEASE_NS}.svc",
        f"{svc}.{RELEASE_NS}.svc.cluster.local",
    ]
    assert "server auth" in serving["spec"]["usages"]
    assert not serving["spec"].get("isCA")
    # Chain: serving <- CA Issuer <- CA Certificate <- self-signed Issuer.
    ca_issuer = issuers[serving["spec"]["issuerRef"]["name"]]
    assert serving["spec"]["issuerRef"]["kind"] == "Issuer"
    (ca_cert,) = [c for c in certs.values() if c["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"]]
    assert ca_cert["spec"]["isCA"] is True
    root = issuers[ca_cert["spec"]["issuerRef"]["name"]]
    assert root["spec"] == {"selfSigned": {}}
    # cainjector fills the caBundle from the serving certificate.
    mwc = only(objects, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{RELEASE_NS}/{serving['metadata']['name']}"
    )
    assert "caBundle" not in webhook(objects)["clientConfig"]


def test_cert_manager_mode_with_a_given_issuer(injector_chart):
    objects = render(injector_chart, MODES["certManagerIssuerRef"])
    assert [o for o in objects if o["kind"] == "Issuer"] == []
    serving = only(objects, "Certificate")
    assert serving["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    volume, _ = tls_volume(objects)
    assert volume["secret"]["secretName"] == serving["spec"]["secretName"]
    annotations = only(objects, "MutatingWebhookConfiguration")["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == (
        f"{RELEASE_NS}/{serving['metadata']['name']}"
    )


def test_existing_secret_mode(injector_chart):
    objects = render(injector_chart, MODES["existingSecret"])
    volume, _ = tls_volume(objects)
    assert volume["secret"]["secretName"] == "injector-tls"
    assert webhook(objects)["clientConfig"]["caBundle"] == CA_PEM_B64
    assert "annotations" not in only(objects, "MutatingWebhookConfiguration")["metadata"]
    assert not [o for o in objects if o["apiVersion"].startswith("cert-manager.io/")]
