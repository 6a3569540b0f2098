"""The tracer's API client connects where the cluster admin says, and trusts its CA.

The tracer's client (kube-rs, in-cluster) takes the server from
KUBERNETES_SERVICE_HOST/PORT and the CA from ca.crt in the token volume.
Service links let a team's Service named `kubernetes` set those variables,
and a team's ConfigMap projected into the token volume could be the CA: the
tracer would then take its pod, container names and probes from a server
the team runs. The injector writes both variables (explicit env wins over
service links), and the policy pins them and what the token volume holds.
"""

from __future__ import annotations

import copy
import pathlib
import subprocess
import tempfile

import helm_python as helm
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

HOST, PORT = "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"


def _tracer(pod, name):
    return setup.tracer_of(pod, name)


def _env(pod, name):
    return _tracer(pod, name)["env"]


def _set_env(pod, name, var, value):
    (entry,) = [e for e in _env(pod, name) if e["name"] == var]
    entry["value"] = value


def _drop_env(pod, name, var):
    _tracer(pod, name)["env"] = [e for e in _env(pod, name) if e["name"] != var]


def _token_sources(pod, name):
    (mount,) = _tracer(pod, name)["volumeMounts"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    return volume["projected"]["sources"]


def _replace_source(pod, name, kind, source):
    sources = _token_sources(pod, name)
    sources[:] = [s for s in sources if kind not in s] + [source]


def test_the_injector_writes_the_configured_api_server_and_the_policy_agrees(installs, injected):
    for form, install in installs.items():
        data = install.config_map["data"]
        assert data["tracer.apiServer.host"] == setup.API_SERVER["host"]
        assert data["tracer.apiServer.port"] == str(setup.API_SERVER["port"])
        assert yaml.safe_load(install.config_text)["sidecar"]["apiServer"] == setup.API_SERVER
        env = {e["name"]: e for e in _env(injected[form], install.tracer_name)}
        assert env[HOST] == {"name": HOST, "value": "10.96.0.1"}
        assert env[PORT] == {"name": PORT, "value": "443"}
        assert install.create(injected[form]).allowed, form


SERVER_TAMPERS = {
    "other-host": lambda p, n: _set_env(p, n, HOST, "10.244.3.7"),
    "host-by-name": lambda p, n: _set_env(p, n, HOST, "kubernetes.default.svc"),
    "other-port": lambda p, n: _set_env(p, n, PORT, "6443"),
    # Then the kubelet's service links set them, which a team's Service
    # named kubernetes decides.
    "no-host": lambda p, n: _drop_env(p, n, HOST),
    "no-port": lambda p, n: _drop_env(p, n, PORT),
    "no-address": lambda p, n: (_drop_env(p, n, HOST), _drop_env(p, n, PORT)),
    # The kubelet keeps the last of two entries of the same name.
    "host-twice": lambda p, n: _env(p, n).append({"name": HOST, "value": "10.244.3.7"}),
    "host-from-a-config-map": lambda p, n: _tracer(p, n).update(env=[e for e in _env(p, n) if e["name"] != HOST] + [
        {"name": HOST, "valueFrom": {"configMapKeyRef": {"name": "team", "key": "host"}}}]),
    "host-from-a-field": lambda p, n: [e for e in _env(p, n) if e["name"] == HOST][0].update(
        valueFrom={"fieldRef": {"fieldPath": "status.podIP"}}),
}

TOKEN_VOLUME_TAMPERS = {
    "team-ca-instead-of-kube-root-ca": lambda p, n: _replace_source(p, n, "configMap", {"configMap": {
        "name": "team-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
    "team-config-map-beside": lambda p, n: _token_sources(p, n).append({"configMap": {
        "name": "team-settings", "items": [{"key": "kubeconfig", "path": "kubeconfig"}]}}),
    "kube-root-ca-with-every-key": lambda p, n: _replace_source(p, n, "configMap", {"configMap": {
        "name": "kube-root-ca.crt"}}),
    "kube-root-ca-under-another-key": lambda p, n: _replace_source(p, n, "configMap", {"configMap": {
        "name": "kube-root-ca.crt", "items": [{"key": "team.crt", "path": "ca.crt"}]}}),
    "openshift-name-other-path": lambda p, n: _token_sources(p, n).append({"configMap": {
        "name": "openshift-service-ca.crt", "items": [{"key": "service-ca.crt", "path": "ca.pem"}]}}),
    "namespace-from-a-label": lambda p, n: _replace_source(p, n, "downwardAPI", {"downwardAPI": {"items": [
        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.labels['ns']"}}]}}),
    "more-downward-items": lambda p, n: _token_sources(p, n)[2]["downwardAPI"]["items"].append(
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}),
    "a-secret": lambda p, n: _token_sources(p, n).append({"secret": {"name": "team-ca"}}),
}


def _refused_as_inexact(install, pod, way, good):
    verdict = install.create(pod) if way == "CREATE" else install.update(good, pod)
    assert not verdict.allowed
    assert {check_of(m) for m in verdict.messages} >= {"capabilities"}, verdict.messages
    return " ".join(verdict.messages)


@pytest.mark.parametrize("way", ["CREATE", "UPDATE"])
@pytest.mark.parametrize("tamper", list(SERVER_TAMPERS))
@pytest.mark.parametrize("form", list(FORMS))
def test_a_tracer_that_could_reach_another_server_is_refused(form, tamper, way, installs, injected):
    install, good = installs[form], injected[form]
    bad = copy.deepcopy(good)
    SERVER_TAMPERS[tamper](bad, install.tracer_name)
    said = _refused_as_inexact(install, bad, way, good)
    assert "is not the tracer as the injector writes it" in said
    assert ("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT once each to the API server 10.96.0.1 port 443"
            in said or "its env is not what the injector sets" in said), said
    assert install.create(bad, namespace=setup.OPEN_NS).allowed


@pytest.mark.parametrize("tamper", list(TOKEN_VOLUME_TAMPERS))
@pytest.mark.parametrize("form", list(FORMS))
def test_a_tracer_that_could_trust_another_ca_is_refused(form, tamper, installs, injected):
    install, good = installs[form], injected[form]
    bad = copy.deepcopy(good)
    TOKEN_VOLUME_TAMPERS[tamper](bad, install.tracer_name)
    said = _refused_as_inexact(install, bad, "CREATE", good)
    assert "its service account token volume projects more than the token" in said, said


def test_without_the_address_no_tracer_is_admitted(injected):
    """`helm template` cannot look the address up: the parameter is empty,
    and the policy, which cannot tell the cluster's address from a team's,
    refuses every tracer and names the value to set."""
    template = setup.Installed(api_server=None)
    assert template.config_map["data"]["tracer.apiServer.host"] == ""
    assert "apiServer" not in yaml.safe_load(template.config_text)["sidecar"]
    unpinned = with_token(template.inject(setup.APP_POD)[0])
    assert not [e for e in _env(unpinned, template.tracer_name) if e["name"] in (HOST, PORT)]
    for pod in (unpinned, injected["native-sidecar"]):
        verdict = template.create(pod)
        assert not verdict.allowed
        said = " ".join(verdict.messages)
        assert "the parameter tracer.apiServer.host is empty" in said, said
        assert "sidecar.apiServer.host" in said
    assert template.create(with_token(setup.APP_POD)).allowed, "pods without the tracer are unaffected"


def with_token(pod):
    return setup.with_service_account_token(pod)


def test_the_configured_address_reaches_both_the_injector_and_the_policy():
    install = setup.Installed({"sidecar": {"apiServer": {"host": "fd00:10:96::1", "port": 6443}}})
    assert install.config_map["data"]["tracer.apiServer.host"] == "fd00:10:96::1"
    assert install.config_map["data"]["tracer.apiServer.port"] == "6443"
    pod = with_token(install.inject(setup.APP_POD)[0])
    env = {e["name"]: e.get("value") for e in _env(pod, install.tracer_name)}
    assert (env[HOST], env[PORT]) == ("fd00:10:96::1", "6443")
    assert install.create(pod).allowed


@pytest.mark.parametrize("host", ["kubernetes.default.svc", "10.96.0.1:443", "https://10.96.0.1"])
def test_the_chart_takes_only_an_ip_address(host):
    with helm.Chart.load(setup.INJECTOR_CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"sidecar": {"apiServer": {"host": host}}})


def _inject_cli(config: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        pathlib.Path(tmp, "config.yaml").write_text(config)
        pathlib.Path(tmp, "pod.yaml").write_text(yaml.safe_dump(setup.APP_POD))
        return subprocess.run(
            [str(setup.injector_binary()), "inject", "--all", "-f", f"{tmp}/pod.yaml", "--config", f"{tmp}/config.yaml"],
            capture_output=True, text=True, timeout=60)


def test_offline_inject_says_when_the_address_is_not_pinned():
    result = _inject_cli("sidecar: {}\n")
    assert result.returncode == 0, result.stderr
    assert "sidecar.apiServer is not set" in result.stderr
    assert "guarded namespaces refuse it" in result.stderr
    result = _inject_cli("sidecar: {apiServer: {host: 10.96.0.1, port: 443}}\n")
    assert result.returncode == 0, result.stderr
    assert "sidecar.apiServer" not in result.stderr


@pytest.mark.parametrize("host", ["kubernetes.default.svc", "010.96.0.1", "fd00:0::1"])
def test_the_injector_refuses_an_address_a_policy_could_not_match(host):
    result = _inject_cli(f"sidecar: {{apiServer: {{host: '{host}', port: 443}}}}\n")
    assert result.returncode != 0
    assert "sidecar.apiServer" in result.stderr, result.stderr
    assert "panicked" not in result.stderr
