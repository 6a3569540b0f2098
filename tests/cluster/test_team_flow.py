"""A team opts in and reads what happened in its pods, through a real API
server, kubelet and containerd: the flow of the README's "Using it".
"""

from __future__ import annotations

import json
import re

from clients import (APP_IMAGE, TRACER, apply, eventually, get, kubectl, pod, pods, tracer_events, wait_events,
                  wait_ready)

APP_SCRIPT = """
touch /tmp/healthy
/bin/uname -a
sh -c 'exit 3'
while true; do sleep 1; done
"""


def deployment(name: str) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app", "image": APP_IMAGE, "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", APP_SCRIPT],
                        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                          "periodSeconds": 2, "initialDelaySeconds": 1},
                    }],
                },
            },
        },
    }


def by(events: list[dict], **fields) -> list[dict]:
    return [e for e in events if all(e.get(k) == v for k, v in fields.items())]


def test_a_deployment_in_an_opted_in_namespace_is_traced(team, node):
    apply(deployment("web"), namespace=team)
    p = eventually("the ReplicaSet's pod", lambda: pods(team, "app=web"))[0]
    name = p["metadata"]["name"]
    # The ReplicaSet controller named it by generateName: no name at admission.
    assert p["metadata"]["generateName"].startswith("web-") and name.startswith("web-")
    spec = p["spec"]
    assert spec["shareProcessNamespace"] is True
    tracer = spec["initContainers"][0]
    assert tracer["name"] == TRACER and tracer["restartPolicy"] == "Always", "a native sidecar"
    assert tracer["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}
    assert "startupProbe" in tracer
    assert p["metadata"]["annotations"]["sidecar.linnix.io/status"].startswith("injected")
    p = wait_ready(team, name)

    # The app container started only once the tracer's startupProbe passed:
    # the tracer saw the app's entrypoint run, not an app already running.
    status = {s["name"]: s for s in p["status"]["initContainerStatuses"] + p["status"]["containerStatuses"]}
    assert status[TRACER]["started"] is True
    events = wait_events(team, name, lambda ev: by(ev, event="exit", exit_code=3), "the app's `exit 3`")
    starts = by(events, event="container_start", container="app")
    assert len(starts) == 1 and not starts[0].get("present"), starts

    uname = by(events, event="exec", comm="uname")
    assert uname and uname[0]["container"] == "app" and uname[0]["argv"] == ["/bin/uname", "-a"]
    assert uname[0]["pod"] == {"name": name, "namespace": team, "uid": p["metadata"]["uid"], "node": node}

    # kubectl exec enters the container; the liveness probe is marked.
    kubectl("exec", "-n", team, name, "-c", "app", "--", "/bin/echo", "visitor")
    events = wait_events(team, name, lambda ev: by(ev, event="exec", comm="echo", entered=True), "the exec'd echo")
    visitor = by(events, event="exec", comm="echo", entered=True)[0]
    assert visitor["argv"] == ["/bin/echo", "visitor"] and visitor["container"] == "app", visitor
    events = wait_events(team, name, lambda ev: by(ev, event="exec", comm="cat", exec_probe="app/liveness"),
                         "the liveness probe's cat")
    assert all(e.get("entered") for e in by(events, exec_probe="app/liveness"))


def test_an_oom_kill_shows_pressure_then_the_kill_then_the_exit(team):
    oom = pod("hog", script="exec dd if=/dev/zero of=/dev/null bs=200M count=1",
              spec={"restartPolicy": "Never"})
    oom["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi", "cpu": "500m"},
                                                 "requests": {"memory": "32Mi", "cpu": "50m"}}
    apply(oom, namespace=team)
    events = wait_events(team, "hog", lambda ev: by(ev, event="container_exit", container="app"),
                         "the app's container_exit", timeout=120)
    kinds = [e["event"] for e in events if e.get("container") == "app"
             and e["event"] in ("memory_pressure", "oom_kill", "container_exit")]
    first = {k: kinds.index(k) for k in ("memory_pressure", "oom_kill", "container_exit")}
    assert first["memory_pressure"] < first["oom_kill"] < first["container_exit"], kinds
    kill = by(events, event="oom_kill")[0]
    assert kill["comm"] == "dd" and kill["memcg_limit_bytes"] == 64 * 2**20
    exit_ = by(events, event="container_exit", container="app")[0]
    assert exit_["oom_killed"] is True and exit_["signal"] == 9
    # The kubelet agrees, and the Kubernetes Event is on the pod.
    state = eventually("the kubelet's terminated state", lambda: get("pod", "hog", team)["status"]
                       ["containerStatuses"][0]["state"].get("terminated"))
    assert state["reason"] == "OOMKilled"
    warned = eventually("the tracer's OOMKilled event on the pod", lambda: [
        e for e in kubectl("get", "events", "-n", team, "--field-selector", "involvedObject.name=hog",
                           "-o", "json").json()["items"]
        if e["reason"] == "OOMKilled" and e.get("reportingComponent", "").startswith("linnix")])
    assert warned[0]["type"] == "Warning"


def test_kubectl_debug_is_traced_and_a_copy_is_not_injected_twice(team):
    apply(pod("target"), namespace=team)
    wait_ready(team, "target")
    # An ephemeral container, as a team debugs under the guard: the baseline
    # profile (kubectl's default, general, adds SYS_PTRACE, which the guard
    # refuses like Pod Security baseline does).
    kubectl("debug", "-n", team, "target", f"--image={APP_IMAGE}", "--image-pull-policy=Never",
            "--container=dbg", "--target=app", "--profile=baseline", "--", "/bin/sh", "-c", "/bin/hostname; sleep 30")
    events = wait_events(team, "target", lambda ev: by(ev, event="exec", comm="hostname"), "the debug container's exec")
    assert by(events, event="exec", comm="hostname")[0]["container"] == "dbg"

    kubectl("debug", "-n", team, "target", "--copy-to=target-copy", "--container=app", "--profile=baseline",
            "--", "sleep", "3600")
    copy = get("pod", "target-copy", team)
    names = [c["name"] for c in copy["spec"].get("initContainers", []) + copy["spec"]["containers"]]
    assert names.count(TRACER) == 1, names
    # Rule 1: the copy keeps the tracer it was copied with, and the webhook
    # leaves it as it is, whatever kubectl dropped (annotations, probes).
    wait_ready(team, "target-copy")


def test_the_logs_are_what_kubectl_logs_shows(team):
    """`kubectl logs -c linnix-tracer` is JSON lines, one event each; the
    default container of `kubectl logs` is the app."""
    apply(pod("plain", script="echo from-the-app; sleep 3600"), namespace=team)
    wait_ready(team, "plain")
    app_log = eventually("the app's own log", lambda: kubectl("logs", "-n", team, "plain").stdout)
    assert app_log.strip() == "from-the-app"
    raw = kubectl("logs", "-n", team, "plain", "-c", TRACER).stdout.splitlines()
    lines = [line for line in raw if line.startswith("{")]
    # The rest is the tracer's stderr (its log), which the container log
    # holds too: timestamped lines, never JSON.
    assert lines and all(isinstance(json.loads(line), dict) for line in lines), raw[:5]
    assert all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in raw if not line.startswith("{")), raw
    assert tracer_events(team, "plain")
