"""The injector chart's admission policies, the real injector, and the pods to admit.

Everything a policy test needs from outside the policy: the chart rendered
by Helm's own library, the `linnix-injector` binary built from this
workspace (its `inject --all` writes the tracer exactly as the webhook
would), Kubernetes' own Pod Security fixtures, and the one thing the API
server adds to every container before validating admission runs: the
service account token mount.
"""

from __future__ import annotations

import copy
import os
import pathlib
import re
import subprocess
import tempfile

import helm_python as helm
import pytest
import yaml

try:  # tests/charts as a package, or as a directory on sys.path
    from .admission_cel import Admission, Cluster, Request, Verdict
except ImportError:
    from admission_cel import Admission, Cluster, Request, Verdict

ROOT = pathlib.Path(__file__).resolve().parents[2]
INJECTOR_CHART = ROOT / "charts" / "linnix-injector"
NAMESPACE_CHART = ROOT / "charts" / "linnix-namespace"


def _fixture_dir() -> pathlib.Path:
    """Kubernetes' own Pod Security fixtures, kept in the repository (see
    its README); LINNIX_PSA_FIXTURES points at another copy."""
    if "LINNIX_PSA_FIXTURES" in os.environ:
        return pathlib.Path(os.environ["LINNIX_PSA_FIXTURES"])
    return ROOT / "tests" / "fixtures" / "pod-security" / "baseline-v1.37"


FIXTURES = _fixture_dir()

RELEASE = "linnix"
RELEASE_NS = "linnix-system"
TEAM_NS = "team-a"  # guarded
OPEN_NS = "open"  # enforces privileged, not guarded
STRICT_NS = "strict"  # enforces baseline

GUARD_LABEL = "sidecar.linnix.io/guard"
ENFORCE = "pod-security.kubernetes.io/enforce"


def namespace(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict:
    meta = {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


GUARDED_LABELS = {
    ENFORCE: "privileged",
    "pod-security.kubernetes.io/warn": "baseline",
    "pod-security.kubernetes.io/audit": "baseline",
    GUARD_LABEL: "baseline",
}

NAMESPACES = [
    namespace(TEAM_NS, GUARDED_LABELS, {"sidecar.linnix.io/inject": "true"}),
    namespace(OPEN_NS, {ENFORCE: "privileged"}, {"sidecar.linnix.io/inject": "true"}),
    namespace(STRICT_NS, {ENFORCE: "baseline"}),
    namespace(RELEASE_NS, {ENFORCE: "restricted"}),
]


# --------------------------------------------------------------------------
# The chart

# The two forms of the tracer the chart can configure.
FORMS = {"native-sidecar": {}, "regular-container": {"sidecar": {"nativeSidecar": False}}}


def check_of(message: str) -> str:
    """'Pod Security baseline, seccomp: …' -> 'seccomp'."""
    match = re.match(r"Pod Security baseline, ([^:]+):", message)
    assert match, f"not a baseline check's message: {message}"
    return match.group(1)



def render(values: dict | None = None) -> list[dict]:
    with helm.Chart.load(INJECTOR_CHART) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=RELEASE_NS)
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc is not None
    ]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def only(objects: list[dict], kind: str) -> dict:
    (found,) = of_kind(objects, kind)
    return found


# What `helm install` finds when it looks up the Service default/kubernetes,
# and Helm's offline render cannot: the cluster's API server address.
API_SERVER = {"host": "10.96.0.1", "port": 443}


def with_api_server(values: dict | None, api_server: dict | None = API_SERVER) -> dict:
    """`values` with sidecar.apiServer as an install would set it, unless
    they set it themselves; `api_server=None`: as `helm template` leaves it."""
    values = copy.deepcopy(values or {})
    if api_server is not None:
        values.setdefault("sidecar", {}).setdefault("apiServer", dict(api_server))
    return values


class Installed:
    """The chart installed with `values` into a cluster of NAMESPACES: as
    `helm install` renders it, which looks up the API server address
    (`api_server=None`: as `helm template`, which cannot)."""

    def __init__(self, values: dict | None = None, *, extra_objects: list[dict] = (),
                 api_server: dict | None = API_SERVER):
        self.values = with_api_server(values, api_server)
        self.objects = render(self.values)
        self.config_map = only(self.objects, "ConfigMap")
        self.config_text = self.config_map["data"]["config.yaml"]
        self.cluster = Cluster(copy.deepcopy(NAMESPACES), [self.config_map, *extra_objects])
        self.admission = Admission(
            of_kind(self.objects, "ValidatingAdmissionPolicy"),
            of_kind(self.objects, "ValidatingAdmissionPolicyBinding"),
            self.cluster,
        )

    @property
    def tracer_name(self) -> str:
        return yaml.safe_load(self.config_text)["sidecar"]["name"]

    def create(self, pod: dict, namespace: str = TEAM_NS) -> Verdict:
        return self.admission.review(Request("CREATE", pod, namespace=namespace))

    def update(self, old: dict, new: dict, namespace: str = TEAM_NS) -> Verdict:
        return self.admission.review(Request("UPDATE", new, old, namespace=namespace))

    def add_ephemeral(self, pod: dict, container: dict, namespace: str = TEAM_NS) -> Verdict:
        """What `kubectl debug` sends: an UPDATE of pods/ephemeralcontainers."""
        new = copy.deepcopy(pod)
        new["spec"].setdefault("ephemeralContainers", []).append(container)
        return self.admission.review(
            Request("UPDATE", new, pod, namespace=namespace, subresource="ephemeralcontainers")
        )

    def connect(self, pod_name: str, container: str | None, subresource: str = "exec",
                namespace: str = TEAM_NS) -> Verdict:
        """`kubectl exec` (or attach) into a container: a CONNECT whose object
        is the PodExecOptions (PodAttachOptions)."""
        kind = "PodExecOptions" if subresource == "exec" else "PodAttachOptions"
        options = {"kind": kind, "apiVersion": "v1", "stdin": True, "stdout": True, "tty": True}
        if subresource == "exec":
            options["command"] = ["/linnix-sidecar", "trace", "--", "/bin/sh"]
        if container is not None:
            options["container"] = container
        req = Request("CONNECT", options, namespace=namespace, subresource=subresource, kind=kind)
        req.object_name = pod_name
        return self.admission.review(req)

    def inject(self, *pods: dict) -> list[dict]:
        return inject(self.config_text, list(pods))


# --------------------------------------------------------------------------
# The injector


_BINARY: pathlib.Path | None = None


def injector_binary() -> pathlib.Path:
    """The `linnix-injector` binary that scripts/test.sh built and named in
    LINNIX_INJECTOR_BIN (see tests/conftest.py): never built here."""
    global _BINARY
    if _BINARY is None:
        given = os.environ.get("LINNIX_INJECTOR_BIN")
        assert given, "no injector binary: run `./scripts/test.sh charts` or set LINNIX_INJECTOR_BIN"
        binary = pathlib.Path(given).resolve()
        assert binary.is_file() and os.access(binary, os.X_OK), f"{binary} is not an executable file"
        _BINARY = binary
    return _BINARY


def inject(config_text: str, pods: list[dict]) -> list[dict]:
    """`linnix-injector inject --all -f FILE --config F` on a List of pods."""
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp, "config.yaml")
        config.write_text(config_text)
        manifest = pathlib.Path(tmp, "pods.yaml")
        manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": pods}))
        result = subprocess.run(
            [str(injector_binary()), "inject", "--all", "-f", str(manifest), "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 0, result.stderr
    (out,) = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert out["kind"] == "List", out
    assert len(out["items"]) == len(pods)
    return out["items"]


def exec_target(pod: dict, container: str | None) -> str | None:
    """The container a CONNECT on pods/exec or pods/attach lands in, as the
    API server picks it after admission (validateContainer in
    pkg/registry/core/pod/strategy.go): the named one, else the pod's only
    app container; None when the request fails."""
    spec = pod["spec"]
    names = [c["name"] for key in ("initContainers", "containers", "ephemeralContainers")
             for c in spec.get(key, [])]
    if container:
        return container if container in names else None
    regular = spec.get("containers", [])
    return regular[0]["name"] if len(regular) == 1 else None


def tracer_of(pod: dict, name: str) -> dict:
    spec = pod["spec"]
    (found,) = [c for c in spec.get("initContainers", []) + spec.get("containers", []) if c["name"] == name]
    return found


# --------------------------------------------------------------------------
# Pods


def fixtures(kind: str) -> list[pathlib.Path]:
    """Kubernetes' own Pod Security fixtures: `pass` or `fail`."""
    found = sorted((FIXTURES / kind).glob("*.yaml"))
    assert found, f"no fixtures in {FIXTURES / kind} (set LINNIX_PSA_FIXTURES to the baseline-v1.37 folder)"
    return found


def load(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def with_service_account_token(pod: dict) -> dict:
    """What the API server adds before validating admission runs: the
    ServiceAccount admission plugin's projected token volume, mounted
    read-only into every init and app container, and the default of the one
    defaulted container field the policy pins (terminationMessagePath)."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key, []):
            container.setdefault("terminationMessagePath", "/dev/termination-log")
    volume = "kube-api-access-x7k2p"
    spec.setdefault("volumes", []).append(
        {
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }
    )
    for key in ("initContainers", "containers"):
        for container in spec.get(key, []):
            container.setdefault("volumeMounts", []).append(
                {"name": volume, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}
            )
    spec.setdefault("serviceAccountName", "default")
    return pod


APP_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "annotations": {"sidecar.linnix.io/inject": "true"}},
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "registry.local/web:1",
                "ports": [{"containerPort": 8080}],
                "securityContext": {"allowPrivilegeEscalation": False},
            }
        ]
    },
}


# Fixtures of the policy tests, which bind them by name
# (`installs = setup.installs`): the injector chart installed in each form
# of the tracer, and the app pod each install injects.
@pytest.fixture(scope="module")
def installs() -> dict[str, Installed]:
    return {form: Installed(values) for form, values in FORMS.items()}


@pytest.fixture(scope="module")
def injected(installs) -> dict[str, dict]:
    """APP_POD injected in each form, with the service account token mounted."""
    return {form: with_service_account_token(i.inject(APP_POD)[0]) for form, i in installs.items()}
