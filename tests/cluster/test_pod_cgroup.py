"""The pod's cgroup as a real kubelet lays it out (cgroupfs driver:
kubepods/<qos>/pod<uid>/<container>): every container of the pod counts
under one pod, restarts included, and nothing of a neighbour on the same
node appears.
"""

from __future__ import annotations

from clients import APP_IMAGE, TRACER, apply, eventually, get, kubectl, pod, tracer_events, wait_events, wait_ready


def container(name: str, script: str) -> dict:
    return {"name": name, "image": APP_IMAGE, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", script]}


def test_init_app_and_restarted_containers_count_under_one_pod(team):
    three = pod("three", spec={
        "initContainers": [container("setup", "/bin/echo init-ran")],
        "containers": [
            container("one", "/bin/echo one-ran; sleep 3600"),
            container("two", "/bin/echo two-ran; sleep 3600"),
            # Exits 4 after a second; restartPolicy Always restarts it.
            container("flaky", "/bin/echo flaky-ran; sleep 1; exit 4"),
        ],
    })
    apply(three, namespace=team)

    def restarted():
        statuses = get("pod", "three", team)["status"].get("containerStatuses", [])
        return any(s["name"] == "flaky" and s["restartCount"] >= 1 for s in statuses)
    eventually("the flaky container restarted", restarted, timeout=120)

    events = wait_events(team, "three", lambda ev: len([e for e in ev if e["event"] == "container_start"
                                                        and e.get("container") == "flaky"]) >= 2,
                         "two starts of flaky", timeout=60)
    starts = [e["container"] for e in events if e["event"] == "container_start"]
    for name in ("setup", "one", "two"):
        assert starts.count(name) == 1, starts
    exits = [e for e in events if e["event"] == "container_exit" and e.get("container") == "flaky"]
    assert exits and exits[0]["exit_code"] == 4
    setup_exit = [e for e in events if e["event"] == "container_exit" and e.get("container") == "setup"]
    assert setup_exit and setup_exit[0]["exit_code"] == 0
    echoed = {e["argv"][1] for e in events if e["event"] == "exec" and e.get("comm") == "echo"}
    assert {"init-ran", "one-ran", "two-ran", "flaky-ran"} <= echoed, echoed
    uid = get("pod", "three", team)["metadata"]["uid"]
    assert {e["pod"]["uid"] for e in events if e.get("pod")} == {uid}


def test_a_neighbour_on_the_same_node_is_not_seen(team):
    apply(pod("traced", script="sleep 3600"), namespace=team)
    wait_ready(team, "traced")
    # The neighbour: not injected, same node, same namespace, execs a marker
    # that would be unmistakable in the traced pod's output.
    neighbour = pod("neighbour", annotations={"sidecar.linnix.io/inject": "false"},
                    script="i=0; while [ $i -lt 50 ]; do /bin/echo neighbour-marker; i=$((i+1)); done; sleep 3600")
    apply(neighbour, namespace=team)
    n = wait_ready(team, "neighbour")
    assert TRACER not in [c["name"] for c in n["spec"].get("initContainers", [])]
    # Give the tracer time it would need to report (it reports its own pod's
    # execs within milliseconds), then prove it is alive and reporting.
    kubectl("exec", "-n", team, "traced", "--", "/bin/echo", "traced-marker")
    events = wait_events(team, "traced", lambda ev: [e for e in ev if e.get("argv") == ["/bin/echo", "traced-marker"]],
                         "the traced pod's own exec")
    assert not [e for e in events if "neighbour-marker" in str(e.get("argv"))]
    assert not [e for e in tracer_events(team, "traced") if e.get("pod", {}) and e["pod"]["name"] != "traced"]
