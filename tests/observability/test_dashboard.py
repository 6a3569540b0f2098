"""The Grafana dashboard (charts/linnix-injector/dashboards/linnix.json):
it is what its generator writes, every query parses under promtool, and
every panel returns data from a real Prometheus (Debian's package, on
loopback) scraping a real tracer over a small workload and a real injector
that answered admission reviews."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import time

import pytest
import requests
import urllib3
import yaml

from dashboard_queries import DASHBOARD, check_panels, load, queries, substitute, summary
from promtool_support import run

HERE = pathlib.Path(__file__).resolve().parent
VARIABLES = {"namespace": "team-a", "pod": "web-1", "datasource": "prometheus"}


def test_the_file_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("generate", DASHBOARD.parent / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.render() == DASHBOARD.read_text(), "run charts/linnix-injector/dashboards/generate.py"


def test_every_query_parses(tmp_path):
    qs = queries(load())
    assert len(qs) >= 11
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"linnix:dashboard_query_{i}", "expr": substitute(q.expr, VARIABLES)} for i, q in enumerate(qs)
    ]}]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(rules))
    r = run("check", "rules", tmp_path / "queries.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(qs)} rules found" in r.stdout


def test_template_variables_parse(tmp_path):
    for v in load()["templating"]["list"]:
        if v["type"] != "query":
            continue
        # label_values(METRIC{...}, label) is Grafana's, not PromQL: its
        # selector must parse.
        inner = v["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        rules = {"groups": [{"name": "v", "rules": [{"record": "linnix:v", "expr": substitute(inner, VARIABLES)}]}]}
        (tmp_path / "v.yaml").write_text(yaml.safe_dump(rules))
        r = run("check", "rules", tmp_path / "v.yaml")
        assert r.returncode == 0, v["name"] + r.stdout + r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def query(url, promql):
    body = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def live_prometheus(sidecar_bin, injector_bin, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the tracer loads BPF programs: run as root (scripts/test.sh charts)")
    # The injector's certificate is self-signed, made at its start.
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    tmp = tmp_path_factory.mktemp("prometheus")
    webhook, injector_metrics, tracer_metrics, prom = (free_port() for _ in range(4))
    procs = []

    def start(args, **kw):
        p = subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL,
                             stderr=open(tmp / f"{len(procs)}.log", "wb"), **kw)
        procs.append(p)
        return p

    try:
        start([injector_bin, "serve", "--self-signed", "--webhook-config", "linnix-test", "--dns", "localhost",
               "--addr", f"127.0.0.1:{webhook}", "--metrics-addr", f"127.0.0.1:{injector_metrics}"],
              env={**os.environ, "KUBECONFIG": str(tmp / "no-kubeconfig")})
        start([sidecar_bin, "trace", "--metrics-addr", f"127.0.0.1:{tracer_metrics}", "--output", "json",
               "--memory-limit", "64M", "--max-events-per-sec", "200", "--", "sh", HERE / "pod_life.sh"],
              env={**os.environ, "HOLD": "40"})
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                # The labels the PodMonitor and ServiceMonitor give.
                {"job_name": "linnix-tracer", "honor_labels": True, "static_configs": [
                    {"targets": [f"127.0.0.1:{tracer_metrics}"],
                     "labels": {"namespace": "team-a", "pod": "web-1", "container": "linnix-tracer"}}]},
                {"job_name": "linnix-injector", "static_configs": [
                    {"targets": [f"127.0.0.1:{injector_metrics}"],
                     "labels": {"namespace": "linnix-system", "pod": "injector-1"}}]},
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        start(["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
               f"--web.listen-address=127.0.0.1:{prom}"])
        url = f"http://127.0.0.1:{prom}"
        wait_for("the injector's metrics", lambda: requests.get(f"http://127.0.0.1:{injector_metrics}/metrics", timeout=2).ok)
        # Admission reviews: pods asking for the tracer and a malformed one.
        for i in range(5):
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": f"u{i}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "team-a", "operation": "CREATE",
                "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": f"web-{i}", "annotations": {"sidecar.linnix.io/inject": "true" if i % 2 else "false"}},
                    "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}
            r = requests.post(f"https://127.0.0.1:{webhook}/mutate", json=review, verify=False, timeout=5)
            assert r.ok, r.text
        requests.post(f"https://127.0.0.1:{webhook}/mutate", data=b"{not json", verify=False, timeout=5,
                      headers={"Content-Type": "application/json"})
        wait_for("both targets up", lambda: len([s for s in query(url, "up == 1")]) == 2)
        wait_for("the OOM kill in Prometheus", lambda: query(url, "linnix_oom_kills_total > 0"))
        # A few more scrapes, so that rates over the window have two points.
        time.sleep(5)
        yield url
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


# Targets that are empty in this set-up, and why: checked to be empty, so
# that the reason stays true.
EMPTY_HERE = {
}


def test_every_panel_returns_data_from_a_real_tracer_and_injector(live_prometheus):
    results = check_panels(live_prometheus, VARIABLES, rate_interval="30s")
    report = summary(results)
    print(report)
    assert not [r for r in results if r.error], report
    for r in results:
        key = (r.query.panel, r.query.ref)
        if key in EMPTY_HERE:
            assert r.series == 0, f"{key} has data now; drop it from EMPTY_HERE ({EMPTY_HERE[key]})\n{report}"
        else:
            assert r.series > 0, f"panel {r.query.panel!r} [{r.query.ref}] is empty\n{report}"


def test_a_fresh_install_has_no_outdated_tracer(live_prometheus):
    """The tracer's version is the one the injector's default configuration
    names, so LinnixTracerOutdated stays quiet until an upgrade."""
    [info] = query(live_prometheus, "linnix_injector_tracer_info")
    [build] = query(live_prometheus, "linnix_build_info")
    assert info["metric"]["version"] == build["metric"]["version"], (info, build)


def test_check_panels_says_which_panel_is_empty(live_prometheus):
    broken = load()
    broken["panels"][1]["targets"][0]["expr"] = "linnix_no_such_metric_total"
    broken["panels"][2]["targets"][0]["expr"] = "sum(("
    results = check_panels(live_prometheus, VARIABLES, dashboard=broken)
    assert results[0].series == 0 and results[0].error is None
    assert results[1].error and "parse" in results[1].error
