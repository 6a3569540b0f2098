"""linnix-injector's chart: RBAC, the Deployment, and the sidecar template it
writes into the injector's config file.
"""

from __future__ import annotations

import pathlib

import helm_python as helm
import pytest
import yaml

from chart_support import MODES, flags, injector_container, kinds, only, selector_matches
from conftest import RELEASE_NS, notes, render


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
    "seccompProfile", "resources", "allowedOverrides", "minMemoryLimit",
    "prometheusAnnotations",
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
                "limits": {"cpu": "500m", "memory": "64Mi"},
            },
            "allowedOverrides": [
                "cpu", "memory", "cpu-limit", "memory-limit", "log-level",
                "max-events-per-sec", "threads", "ignore-exec-probes", "native-sidecar",
            ],
            "minMemoryLimit": "32Mi",
            "prometheusAnnotations": False,
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
            "prometheusAnnotations": True,
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
    assert sidecar["prometheusAnnotations"] is True


def test_native_sidecar_off(injector_chart):
    objects = render(injector_chart, MODES["nativeSidecarOff"])
    assert config_of(objects)["sidecar"]["nativeSidecar"] is False
    assert "native" not in notes(injector_chart, MODES["nativeSidecarOff"]).split("Sidecar:")[1].split("\n")[0]


def test_unconfined_seccomp_for_the_sidecar(injector_chart):
    values = {"sidecar": {"seccompProfile": {"type": "Unconfined"}}}
    assert config_of(render(injector_chart, values))["sidecar"]["seccompProfile"] == {"type": "Unconfined"}
