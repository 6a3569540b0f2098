"""Checks of the Helm charts under charts/ with real Helm and real schemas.

Helm is Helm's own Go library (helm-python-sdk): lint, values.schema.json
validation and template rendering are exactly what `helm lint` and
`helm template` do. Rendered objects of core kinds are validated against the
Kubernetes OpenAPI schemas shipped by kubernetes-validate, in strict mode
(unknown fields are errors). cert-manager kinds (Issuer, Certificate) are not
in those schemas; they are checked structurally against cert-manager.io/v1's
required fields instead.
"""

from __future__ import annotations

import base64
import copy
import pathlib
import re
import shlex

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
INJECTOR_CHART = ROOT / "charts" / "linnix-injector"
NAMESPACE_CHART = ROOT / "charts" / "linnix-namespace"

RELEASE = "linnix"
RELEASE_NS = "observability"
TEAM_NS = "team-a"

# The chart's minimum (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)

CA_PEM_B64 = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
).decode()

MODES = {
    "selfSigned": {},
    "certManager": {"certificates": {"mode": "certManager"}},
    "certManagerIssuerRef": {
        "certificates": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "existingSecret": {
        "certificates": {
            "mode": "existingSecret",
            "existingSecret": {"name": "injector-tls", "caBundle": CA_PEM_B64},
        }
    },
    "nativeSidecarOff": {"sidecar": {"nativeSidecar": False}},
}


# --------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def injector_chart():
    with helm.Chart.load(INJECTOR_CHART) as chart:
        yield chart


@pytest.fixture(scope="module")
def namespace_chart():
    with helm.Chart.load(NAMESPACE_CHART) as chart:
        yield chart


def render(chart, values=None, *, name=RELEASE, namespace=RELEASE_NS) -> list[dict]:
    """Renders like `helm template` and returns every Kubernetes object."""
    manifests = chart.render(values or {}, name=name, namespace=namespace)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                objects.append(doc)
    return objects


def notes(chart, values=None, *, name=RELEASE, namespace=RELEASE_NS) -> str:
    manifests = chart.render(values or {}, name=name, namespace=namespace)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def only(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
    return found[0]


def by_name(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """Evaluates a metav1.LabelSelector the way the API server does."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise AssertionError(f"unknown selector operator {op}")
    return True


def flags(args: list[str]) -> dict[str, list[str]]:
    """Splits `--name=value` / `--name` arguments into name -> values."""
    out: dict[str, list[str]] = {}
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, _, value = arg[2:].partition("=")
        out.setdefault(name, []).append(value)
    return out


def injector_container(objects: list[dict]) -> dict:
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def webhook(objects: list[dict]) -> dict:
    hooks = only(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert len(hooks) == 1
    return hooks[0]


def check_cert_manager_object(obj: dict) -> None:
    """Structural check of the cert-manager.io/v1 kinds the chart renders.

    kubernetes-validate ships no CRD schemas, so this checks the fields
    cert-manager's v1 CRDs require and the ones this chart depends on.
    """
    assert obj["apiVersion"] == "cert-manager.io/v1"
    meta = obj["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]), meta["name"]
    assert meta["namespace"] == RELEASE_NS
    spec = obj["spec"]
    if obj["kind"] == "Issuer":
        # An Issuer must configure exactly one issuing mechanism.
        mechanisms = {"selfSigned", "ca", "acme", "vault", "venafi"} & spec.keys()
        assert len(mechanisms) == 1, spec
        if "ca" in spec:
            assert spec["ca"]["secretName"]
    elif obj["kind"] == "Certificate":
        # Required by the CRD: secretName and issuerRef.name.
        assert spec["secretName"]
        assert spec["issuerRef"]["name"]
        assert spec["issuerRef"].get("kind", "Issuer") in ("Issuer", "ClusterIssuer")
        assert set(spec) <= {
            "secretName", "issuerRef", "commonName", "dnsNames", "duration",
            "renewBefore", "usages", "privateKey", "isCA", "secretTemplate",
        }, spec.keys()
        for field in ("duration", "renewBefore"):
            if field in spec:
                assert re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms))+", spec[field]), spec[field]
        if "privateKey" in spec:
            assert spec["privateKey"]["algorithm"] in ("RSA", "ECDSA", "Ed25519")
            assert spec["privateKey"].get("rotationPolicy", "Always") in ("Always", "Never")
    else:
        raise AssertionError(f"unexpected cert-manager kind {obj['kind']}")


def validate(obj: dict, version: str) -> None:
    if obj["apiVersion"].startswith("cert-manager.io/"):
        check_cert_manager_object(obj)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
            f"{err.message} at {list(err.absolute_path)}"
        ) from None


# --------------------------------------------------------------------------
# Lint


@pytest.mark.parametrize("chart_dir", [INJECTOR_CHART, NAMESPACE_CHART], ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ["default", "certManager", "existingSecret"])
def test_lint_strict_is_clean(chart_dir, mode):
    values = {} if mode == "default" or chart_dir == NAMESPACE_CHART else MODES[mode]
    report = helm.lint(chart_dir, values, strict=True, namespace=RELEASE_NS)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; 1 (info) is only "icon is recommended".
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


def test_lint_reports_values_that_break_the_schema():
    report = helm.lint(INJECTOR_CHART, {"replicaCount": "two"}, strict=True)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"])
    text = str(report)
    assert "replicaCount" in text


# --------------------------------------------------------------------------
# Schemas of every rendered object


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("mode", list(MODES))
def test_injector_objects_are_valid_kubernetes(injector_chart, mode, version):
    objects = render(injector_chart, MODES[mode])
    assert objects
    for obj in objects:
        validate(obj, version)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_namespace_objects_are_valid_kubernetes(namespace_chart, version):
    objects = render(
        namespace_chart, {"serviceAccounts": ["default", "batch"]}, namespace=TEAM_NS
    )
    assert objects
    for obj in objects:
        validate(obj, version)


def test_schema_validation_catches_invalid_objects():
    """The validation above can fail: a broken Deployment is refused."""
    with helm.Chart.load(INJECTOR_CHART) as chart:
        deployment = copy.deepcopy(only(render(chart), "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError, match="Deployment"):
        validate(deployment, KUBE_VERSIONS[-1])
    deployment = copy.deepcopy(deployment)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["notAField"] = True
    with pytest.raises(AssertionError, match="Deployment"):
        validate(deployment, KUBE_VERSIONS[-1])


# --------------------------------------------------------------------------
# What each mode renders


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


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


# --------------------------------------------------------------------------
# RBAC


def rules_of(objects: list[dict]) -> list[dict]:
    return only(objects, "ClusterRole")["rules"]


def test_cluster_role_is_minimal_in_self_signed_mode(injector_chart):
    objects = render(injector_chart, MODES["selfSigned"])
    mwc_name = only(objects, "MutatingWebhookConfiguration")["metadata"]["name"]
    assert rules_of(objects) == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [mwc_name],
            "verbs": ["get", "patch"],
        },
    ]


@pytest.mark.parametrize("mode", ["certManager", "existingSecret"])
def test_cluster_role_cannot_touch_webhooks_when_it_does_not_patch_them(injector_chart, mode):
    assert rules_of(render(injector_chart, MODES[mode])) == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    ]


@pytest.mark.parametrize("mode", ["selfSigned", "certManager"])
def test_cluster_role_is_bound_to_the_injectors_service_account(injector_chart, mode):
    objects = render(injector_chart, MODES[mode])
    role = only(objects, "ClusterRole")
    binding = only(objects, "ClusterRoleBinding")
    sa = only(objects, "ServiceAccount")
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": RELEASE_NS}
    ]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def test_cluster_scoped_names_differ_between_namespaces(injector_chart):
    a = render(injector_chart, namespace="ns-a")
    b = render(injector_chart, namespace="ns-b")
    for kind in ("MutatingWebhookConfiguration", "ClusterRole", "ClusterRoleBinding"):
        assert only(a, kind)["metadata"]["name"] != only(b, kind)["metadata"]["name"]


def test_existing_service_account(injector_chart):
    objects = render(injector_chart, {"serviceAccount": {"create": False, "name": "webhook-sa"}})
    assert [o for o in objects if o["kind"] == "ServiceAccount"] == []
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "webhook-sa"
    assert only(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "webhook-sa"
    with pytest.raises(helm.HelmRenderError, match="serviceAccount.name"):
        render(injector_chart, {"serviceAccount": {"create": False}})


# --------------------------------------------------------------------------
# Deployment


def test_deployment_replicas_probes_and_security(injector_chart):
    objects = render(injector_chart)
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    container = injector_container(objects)
    https_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "https")
    assert https_port == 8443
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["scheme"] == "HTTPS"
        assert get["path"] == path
        assert get["port"] in ("https", 8443)
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for section in ("requests", "limits"):
        assert container["resources"][section]["cpu"]
        assert container["resources"][section]["memory"]
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container["env"]
    # Replicas are spread over nodes, softly so a one-node cluster works.
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert selector_matches(spread["labelSelector"], deployment["spec"]["template"]["metadata"]["labels"])


def test_deployment_meets_pod_security_restricted(injector_chart):
    """The fields the `restricted` Pod Security Standard checks."""
    pod = only(render(injector_chart), "Deployment")["spec"]["template"]["spec"]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= {"configMap", "secret", "emptyDir", "projected"}
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert sc.get("privileged") in (None, False)
        for port in container["ports"]:
            assert "hostPort" not in port


def test_deployment_args_use_the_configured_values(injector_chart):
    container = injector_container(
        render(
            injector_chart,
            {"ports": {"webhook": 9443, "metrics": 9100}, "logLevel": "debug",
             "image": {"repository": "registry.local/injector", "tag": "dev"}},
        )
    )
    args = flags(container["args"])
    assert args["addr"] == ["0.0.0.0:9443"]
    assert args["metrics-addr"] == ["0.0.0.0:9100"]
    assert args["log-level"] == ["debug"]
    assert container["image"] == "registry.local/injector:dev"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"https": 9443, "metrics": 9100}


def test_config_file_is_mounted_from_the_config_map(injector_chart):
    objects = render(injector_chart)
    container = injector_container(objects)
    (config_path,) = flags(container["args"])["config"]
    path = pathlib.PurePosixPath(config_path)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert "subPath" not in mount
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = only(objects, "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert path.name in config_map["data"]


def test_pod_disruption_budget(injector_chart):
    objects = render(injector_chart)
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(pdb["spec"]["selector"], pod_labels)
    # minAvailable 1 with one replica would block every node drain.
    assert "PodDisruptionBudget" not in kinds(render(injector_chart, {"replicaCount": 1}))


def test_config_change_rolls_the_pods(injector_chart):
    def checksum(values):
        deployment = only(render(injector_chart, values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"sidecar": {"metricsPort": 9000}})


# --------------------------------------------------------------------------
# Sidecar template (the injector's config file)


def config_of(objects: list[dict]) -> dict:
    return yaml.safe_load(only(objects, "ConfigMap")["data"]["config.yaml"])


CONTRACT_KEYS = {
    "name", "image", "imagePullPolicy", "args", "metricsPort", "nativeSidecar",
    "seccompProfile", "resources",
}


def test_default_config_is_written_in_full(injector_chart):
    # Equality with the injector's built-in defaults is checked against the
    # real binary in test_chart_injector.py.
    assert config_of(render(injector_chart)) == {
        "sidecar": {
            "name": "linnix-tracer",
            "image": "linnix/linnix-sidecar:0.1.0",
            "imagePullPolicy": "IfNotPresent",
            "args": [],
            "metricsPort": 9464,
            "nativeSidecar": True,
            "seccompProfile": {"type": "Unconfined"},
            "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"cpu": "200m", "memory": "64Mi"},
            },
        }
    }


def test_config_carries_the_sidecar_values(injector_chart):
    values = {
        "sidecar": {
            "name": "tracer",
            "image": {"repository": "registry.local/linnix-sidecar", "tag": "1.2.3", "pullPolicy": "Always"},
            "args": ["--log-level=debug", "--exit-only"],
            "metricsPort": 9500,
            "nativeSidecar": False,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/linnix-tracer.json"},
            "resources": {
                "requests": {"cpu": "50m", "memory": "48Mi"},
                "limits": {"cpu": "1", "memory": "128Mi"},
            },
        }
    }
    sidecar = config_of(render(injector_chart, values))["sidecar"]
    assert set(sidecar) == CONTRACT_KEYS
    assert sidecar["name"] == "tracer"
    assert sidecar["image"] == "registry.local/linnix-sidecar:1.2.3"
    assert sidecar["imagePullPolicy"] == "Always"
    assert sidecar["args"] == ["--log-level=debug", "--exit-only"]
    assert sidecar["metricsPort"] == 9500
    assert sidecar["nativeSidecar"] is False
    assert sidecar["seccompProfile"] == {"type": "Localhost", "localhostProfile": "profiles/linnix-tracer.json"}
    assert sidecar["resources"] == values["sidecar"]["resources"]


def test_native_sidecar_off(injector_chart):
    objects = render(injector_chart, MODES["nativeSidecarOff"])
    assert config_of(objects)["sidecar"]["nativeSidecar"] is False
    assert "native" not in notes(injector_chart, MODES["nativeSidecarOff"]).split("Sidecar:")[1].split("\n")[0]


def test_unconfined_seccomp_for_the_sidecar(injector_chart):
    values = {"sidecar": {"seccompProfile": {"type": "Unconfined"}}}
    assert config_of(render(injector_chart, values))["sidecar"]["seccompProfile"] == {"type": "Unconfined"}


# --------------------------------------------------------------------------
# values.schema.json


BAD_INJECTOR_VALUES = {
    "replicas-not-a-number": {"replicaCount": "two"},
    "zero-replicas": {"replicaCount": 0},
    "unknown-certificate-mode": {"certificates": {"mode": "vault"}},
    "unknown-top-level-key": {"replicas": 2},
    "unknown-sidecar-key": {"sidecar": {"privileged": True}},
    "sidecar-port-out-of-range": {"sidecar": {"metricsPort": 70000}},
    "native-sidecar-not-a-bool": {"sidecar": {"nativeSidecar": "yes"}},
    "localhost-seccomp-without-profile": {"sidecar": {"seccompProfile": {"type": "Localhost"}}},
    "unknown-seccomp-type": {"sidecar": {"seccompProfile": {"type": "Privileged"}}},
    "bad-quantity": {"sidecar": {"resources": {"limits": {"memory": "lots"}}}},
    # The injector's config file knows cpu and memory only.
    "sidecar-ephemeral-storage": {"sidecar": {"resources": {"limits": {"ephemeral-storage": "1Gi"}}}},
    "timeout-too-long": {"webhook": {"timeoutSeconds": 31}},
    "unknown-failure-policy": {"webhook": {"failurePolicy": "Retry"}},
    "existing-secret-without-name": {
        "certificates": {"mode": "existingSecret", "existingSecret": {"caBundle": CA_PEM_B64}}
    },
    "existing-secret-without-ca": {
        "certificates": {"mode": "existingSecret", "existingSecret": {"name": "tls"}}
    },
    "ca-bundle-not-base64": {
        "certificates": {"mode": "existingSecret", "existingSecret": {"name": "tls", "caBundle": "-----BEGIN"}}
    },
    "issuer-kind-unknown": {
        "certificates": {"mode": "certManager", "certManager": {"issuerRef": {"name": "x", "kind": "Vault"}}}
    },
    "bad-log-level": {"logLevel": "verbose"},
}


@pytest.mark.parametrize("values", BAD_INJECTOR_VALUES.values(), ids=BAD_INJECTOR_VALUES.keys())
def test_schema_rejects_bad_injector_values(injector_chart, values):
    with pytest.raises(helm.HelmValuesError):
        injector_chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        render(injector_chart, values)


def test_schema_error_names_the_offending_key(injector_chart):
    with pytest.raises(helm.HelmValuesError, match="mode"):
        render(injector_chart, {"certificates": {"mode": "vault"}})


@pytest.mark.parametrize("mode", list(MODES))
def test_schema_accepts_the_documented_values(injector_chart, mode):
    injector_chart.validate_schema(MODES[mode])


def test_schema_accepts_the_defaults_file(injector_chart):
    injector_chart.validate_schema(yaml.safe_load((INJECTOR_CHART / "values.yaml").read_text()))


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
