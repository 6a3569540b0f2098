"""End to end on a real container engine.

Builds the images, injects the example pod with `linnix-injector inject` (run
from the injector image), runs it and a flooding neighbour pod with
`podman kube play`, and asserts from the tracer's own output that the app's
births, its exit with code 3 and its OOM kill were seen, attributed to the app
container, while the tracer held only CAP_BPF and CAP_PERFMON and saw nothing
of the neighbour.

podman 4.3 differs from a kubelet: it runs no native sidecars (the injected
native sidecar becomes a regular container), ignores `seccompProfile` (translated to the
legacy annotation) and knows only `metadata.name` in the downward API (other
fields become literals). tests/e2e/podman_compat.py does that translation and
prints what it changed.

What stays here, now that tests/cluster runs every user flow on a real
kubelet: what only this path shows. The offline `linnix-injector inject`,
run from the injector's own image, produces a pod that another engine than
containerd runs (the README's "without Kubernetes" story, and
scripts/demo-podman.sh); and a neighbour that
floods fork/exec beside the traced pod, whose `lost` accounting the
cluster tests do not exercise. Births, exits, OOM kills and entered
processes are asserted here too because they are the proof that the
injected pod works at all on this engine, not as a second test of the
flows.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from podman_compat import adapt_documents

E2E = Path(__file__).resolve().parent
VERSION = subprocess.run([ROOT / "scripts" / "version.sh"], check=True, capture_output=True, text=True).stdout.strip()
IMAGES = [f"localhost/{name}:{VERSION}" for name in ("linnix-sidecar", "linnix-injector", "linnix-demo-app")]
TRACER = "linnix-tracer"
CAP_BPF, CAP_PERFMON = 39, 38


def podman(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def inject(pod_file: Path) -> str:
    """Run the injector image offline on a pod manifest."""
    result = podman(
        "run", "--rm", "-i", "--network=none",
        "-v", f"{E2E / 'injector-config.yaml'}:/etc/linnix/config.yaml:ro",
        IMAGES[1], "inject", "-f", "-", "--config", "/etc/linnix/config.yaml",
        input=pod_file.read_text(),
    )
    return result.stdout


def container_state(name: str) -> str:
    return podman("inspect", name, "--format", "{{.State.Status}}", check=False).stdout.strip()


def wait_exited(name: str, timeout: float, while_waiting=lambda: None) -> None:
    deadline = time.monotonic() + timeout
    while container_state(name) not in ("exited", "stopped"):
        if time.monotonic() > deadline:
            logs = podman("logs", name, check=False)
            pytest.fail(f"{name} still {container_state(name)!r} after {timeout}s:\n{logs.stdout}{logs.stderr}")
        while_waiting()
        time.sleep(0.5)


def scrape(tracer_pid: int) -> str:
    """/metrics from the pod's network namespace, as a Prometheus scraper would reach it."""
    return subprocess.run(
        ["nsenter", "-t", str(tracer_pid), "-n", "curl", "-fsS", "http://127.0.0.1:9464/metrics"],
        check=True, capture_output=True, text=True,
    ).stdout


def wait_ready(tracer: str, timeout: float = 60) -> None:
    """Until the tracer container answers /readyz: its programs are attached,
    so what happens in the pod from now on is seen (podman starts a pod's
    containers together; Kubernetes starts them after the native sidecar's
    startup probe)."""
    deadline = time.monotonic() + timeout
    while True:
        pid = podman("inspect", tracer, "--format", "{{.State.Pid}}", check=False).stdout.strip()
        if pid.isdigit() and int(pid) > 0 and subprocess.run(
            ["nsenter", "-t", pid, "-n", "curl", "-fsS", "http://127.0.0.1:9464/readyz"],
            capture_output=True,
        ).returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = podman("logs", tracer, check=False)
            pytest.fail(f"{tracer} not ready after {timeout}s:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.2)


def wait_for_line(container: str, text: str, timeout: float = 60) -> None:
    """Until a line of the container's stdout contains `text`."""
    deadline = time.monotonic() + timeout
    while text not in podman("logs", container, check=False).stdout:
        if time.monotonic() > deadline:
            pytest.fail(f"no line of {container} says {text!r} after {timeout}s")
        time.sleep(0.2)


def events_of(container: str, keep: Path | None = None) -> list[dict]:
    """The tracer's stdout: one JSON object per line, nothing else. `keep`:
    a file the lines are also written to, to read after a failure."""
    out = podman("logs", container, check=False)
    if keep is not None:
        keep.write_text(out.stdout)
    events = []
    for line in out.stdout.splitlines():
        events.append(json.loads(line))  # a line that is not JSON fails the test
    return events


def ts_ns(ts: str) -> int:
    """RFC 3339 UTC timestamp to nanoseconds, keeping every fraction digit."""
    whole, _, rest = ts.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp()
    return int(seconds) * 1_000_000_000 + int((rest or "0").ljust(9, "0")[:9])


def cap_eff(host_pid: int) -> int:
    status = Path(f"/proc/{host_pid}/status").read_text()
    return int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)


@dataclass
class Run:
    injected: dict
    app_id: str
    neighbour_id: str
    tracer_caps: int
    app_log: str
    metrics: str
    # A scrape taken while the app still ran: the memory gauges of a
    # container go with its last process.
    live_metrics: str
    # Wall clock (ns) just before `podman exec` entered the neighbour.
    entered_ns: int = 0
    events: list[dict] = field(default_factory=list)
    neighbour_events: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def images():
    subprocess.run([str(ROOT / "scripts" / "build-images.sh")], check=True)
    yield
    podman("rmi", "-f", *IMAGES, check=False)


@pytest.fixture(scope="module")
def run(images, tmp_path_factory) -> Run:
    work = tmp_path_factory.mktemp("e2e")
    manifests = {}
    for pod in ("neighbour", "app"):
        injected = inject(E2E / f"{pod}-pod.yaml")
        text, notes = adapt_documents(injected, namespace="default")
        print(f"podman translation for {pod}: " + "; ".join(notes))
        path = work / f"{pod}.yaml"
        path.write_text(text)
        manifests[pod] = (path, yaml.safe_load(injected))
    try:
        # The neighbour floods first and goes on while the app runs. From the
        # work folder: conmon stays in podman's folder and writes a file
        # `oom` there when a container is OOM-killed.
        podman("kube", "play", str(manifests["neighbour"][0]), cwd=work)
        podman("kube", "play", str(manifests["app"][0]), cwd=work)
        # Someone enters the flooding container, as `kubectl exec` would,
        # once its tracer is watching and reporting the flood (the runtime's
        # join comes milliseconds before the exec: a tracer still attaching
        # may see one and not the other).
        neighbour_tracer = f"linnix-neighbour-{TRACER}"
        wait_ready(neighbour_tracer)
        wait_for_line(neighbour_tracer, "neighbour-flood-marker")
        entered_ns = time.time_ns()
        podman("exec", "linnix-neighbour-flood", "/bin/echo", "visitor-marker")
        tracer = f"linnix-demo-{TRACER}"
        pid = int(podman("inspect", tracer, "--format", "{{.State.Pid}}").stdout)
        caps = cap_eff(pid)
        app_id = podman("inspect", "linnix-demo-app", "--format", "{{.Id}}").stdout.strip()
        live = [""]

        def scrape_while_the_app_runs() -> None:
            text = scrape(pid)
            if f'linnix_container_memory_usage_bytes{{container="{app_id}"}}' in text:
                live[0] = text

        wait_exited("linnix-demo-app", timeout=180, while_waiting=scrape_while_the_app_runs)
        wait_exited("linnix-neighbour-flood", timeout=180)
        time.sleep(1)  # let the tracers write their last lines
        metrics = scrape(pid)
        result = Run(
            injected=manifests["app"][1],
            app_id=app_id,
            neighbour_id=podman("inspect", "linnix-neighbour-flood", "--format", "{{.Id}}").stdout.strip(),
            tracer_caps=caps,
            app_log=podman("logs", "linnix-demo-app").stdout,
            metrics=metrics,
            live_metrics=live[0],
            entered_ns=entered_ns,
        )
        result.events = events_of(tracer, work / "app-tracer.jsonl")
        result.neighbour_events = events_of(f"linnix-neighbour-{TRACER}", work / "neighbour-tracer.jsonl")
        print(f"the tracers' lines: {work}")
        yield result
    finally:
        for pod in ("app", "neighbour"):
            podman("kube", "down", str(manifests[pod][0]), check=False)


def app_events(run: Run, kind: str) -> list[dict]:
    return [e for e in run.events if e["event"] == kind and e.get("container") == run.app_id]


def test_injected_pod_has_the_tracer_with_only_bpf_and_perfmon(run: Run):
    spec = run.injected["spec"]
    assert spec["shareProcessNamespace"] is True
    tracer = spec["initContainers"][0]
    assert tracer["name"] == TRACER and tracer["restartPolicy"] == "Always", "a native sidecar, as on a cluster"
    security = tracer["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}
    assert security["allowPrivilegeEscalation"] is False
    assert not security.get("privileged", False)
    assert not spec.get("hostPID", False)
    assert not any("hostPath" in v for v in spec.get("volumes", []))
    assert run.tracer_caps == (1 << CAP_BPF) | (1 << CAP_PERFMON), hex(run.tracer_caps)


def test_every_line_follows_the_event_contract(run: Run):
    assert run.events, "the tracer printed nothing"
    for event in run.events:
        if event["event"] == "lost":
            # Where the kernel dropped events: counts, no task.
            assert set(event) == {"event", "ts", "lost", "rate_limited", "pod"}, event
            continue
        assert event["event"] in {
            "present", "fork", "exec", "exit", "oom_kill", "memory_pressure",
            "cgroup_join", "cgroup_leave", "container_start", "container_exit",
        }
        for key in ("ts", "pid", "host_pid", "ppid", "comm", "container", "pod", "exec_id", "parent_exec_id"):
            assert key in event, (key, event)
        assert isinstance(event["exec_id"], str) and event["exec_id"], event
        assert event["pod"]["name"] == "linnix-demo"


def test_births_of_the_app_are_reported(run: Run):
    execs = app_events(run, "exec")
    argvs = [e["argv"] for e in execs]
    assert ["/bin/uname", "-a"] in argvs, argvs
    assert ["/bin/ls", "/"] in argvs, argvs
    assert ["sh", "-c", "exit 3"] in argvs, argvs
    forks = app_events(run, "fork")
    assert len(forks) >= 4, forks  # uname, ls, sh -c 'exit 3', dd, sleep ...


def test_the_app_container_starts_and_exits_with_its_main_process(run: Run):
    starts = app_events(run, "container_start")
    assert len(starts) == 1, starts
    assert starts[0]["argv"][:2] == ["/bin/sh", "-c"], starts[0]
    exits = app_events(run, "container_exit")
    assert len(exits) == 1, exits
    assert exits[0]["exit_code"] == 0 and exits[0]["oom_killed"] is False, exits[0]
    # The OOM kill of dd inside the container is counted, not the container's.
    assert exits[0]["oom_kills"] == 1, exits[0]
    assert exits[0]["exec_id"] == starts[0]["exec_id"]
    # Everything the app ran descends from its main process.
    ids = {e["exec_id"] for e in run.events if e.get("container") == run.app_id}
    assert starts[0]["exec_id"] in ids
    assert not [e for e in run.events if e.get("container") == run.app_id and e.get("entered")]


def test_exit_with_code_three_is_reported(run: Run):
    exits = app_events(run, "exit")
    assert any(e["exit_code"] == 3 and e["signal"] is None for e in exits), exits


def test_oom_kill_of_the_memory_hog_is_reported(run: Run):
    hog_pid = int(re.search(r"memory hog pid=(\d+)", run.app_log).group(1))
    assert "memory hog exited with 137" in run.app_log, run.app_log
    ooms = app_events(run, "oom_kill")
    assert [e["pid"] for e in ooms] == [hog_pid], ooms
    assert ooms[0]["comm"] == "dd"
    assert ooms[0]["rss_kb"] > 0
    hog_exit = [e for e in app_events(run, "exit") if e["pid"] == hog_pid]
    assert [e["signal"] for e in hog_exit] == [9], hog_exit


def test_the_memory_hog_shows_pressure_before_its_oom_kill(run: Run):
    hog_pid = int(re.search(r"memory hog pid=(\d+)", run.app_log).group(1))
    limit = 64 << 20
    kinds = [e["event"] for e in run.events if e.get("container") == run.app_id]
    assert "memory_pressure" in kinds, kinds
    assert kinds.index("memory_pressure") < kinds.index("oom_kill"), kinds
    pressure = app_events(run, "memory_pressure")[0]
    # dd allocating its 200 MiB block is what reclaimed at the limit.
    assert (pressure["pid"], pressure["comm"]) == (hog_pid, "dd"), pressure
    assert pressure["reason"] in ("reclaim", "threshold"), pressure
    assert pressure["count"] >= 1, pressure
    assert pressure["memcg_limit_bytes"] == limit, pressure
    assert limit * 0.9 <= pressure["memcg_usage_bytes"] <= limit, pressure


def test_memory_metrics_of_the_app(run: Run):
    app = run.app_id
    # Counters outlive the container.
    assert metric(run.metrics, "linnix_container_memory_pressure_total", container=app) >= 1
    assert metric(run.metrics, "linnix_events_total", kind="memory_pressure", container=app) == len(
        app_events(run, "memory_pressure"))
    assert metric(run.metrics, "linnix_container_memory_events_total", container=app, event="max") >= 1
    # The gauges while it ran, and no more once it is gone.
    assert run.live_metrics, "no scrape showed the app's memory gauges while it ran"
    assert metric(run.live_metrics, "linnix_container_memory_limit_bytes", container=app) == 64 << 20
    assert 0 < metric(run.live_metrics, "linnix_container_memory_usage_bytes", container=app) <= 64 << 20
    assert f'linnix_container_memory_usage_bytes{{container="{app}"}}' not in run.metrics
    # The tracer's own container is not reported (the pod's infra container is).
    tracer_id = podman("inspect", f"linnix-demo-{TRACER}", "--format", "{{.Id}}").stdout.strip()
    assert f'container="{tracer_id}"' not in run.live_metrics


def test_nothing_of_the_neighbour_reaches_the_app_tracer(run: Run):
    leaked = [
        e for e in run.events
        if e.get("container") == run.neighbour_id or "neighbour-flood-marker" in e.get("argv", [])
    ]
    assert leaked == []
    # The flood was real and overlapped the app's run: the neighbour's own
    # tracer saw it before and after the app's events.
    marker_ts = [ts_ns(e["ts"]) for e in run.neighbour_events if "neighbour-flood-marker" in e.get("argv", [])]
    app_ts = [
        ts_ns(e["ts"]) for e in run.events
        if e.get("container") == run.app_id and e["event"] != "present" and not e.get("present")
    ]
    assert len(marker_ts) > 100
    assert min(marker_ts) < min(app_ts) and max(marker_ts) > max(app_ts)


def test_a_podman_exec_is_reported_as_entered(run: Run):
    visits = [e for e in run.neighbour_events if e.get("argv") == ["/bin/echo", "visitor-marker"]]
    if not visits:
        # Under the neighbour's flood the visit itself may be dropped; then
        # a `lost` line from around it says so.
        near = [e for e in run.neighbour_events
                if e["event"] == "lost" and -1e9 < ts_ns(e["ts"]) - run.entered_ns < 3e9]
        assert near, "the visit is missing and no lost line around it says so"
        pytest.skip(f"the visit was among the dropped events ({near}); nothing more to check")
    assert len(visits) == 1, visits
    visit = visits[0]
    assert visit["entered"] is True, visit
    # runc's exec moved its last helper into the container, which then ran echo.
    # (`lost` lines, which the flood may cause, are about no process.)
    lines = [e["event"] for e in run.neighbour_events if e.get("exec_id") == visit["exec_id"]]
    if lines != ["cgroup_join", "exec", "exit"]:
        # The neighbour floods its tracer's ring: the join may be among the
        # dropped records, and then a `lost` line near the exec says so.
        assert lines == ["exec", "exit"], lines
        exec_ts = next(ts_ns(e["ts"]) for e in run.neighbour_events
                       if e.get("exec_id") == visit["exec_id"] and e["event"] == "exec")
        # A lost line counts what was dropped since the previous one, and
        # comes at the next record that finds room, at most one per 100 ms:
        # so it may follow the exec (measured: 198 ms after it). The join
        # comes milliseconds before its exec.
        near = [e for e in run.neighbour_events
                if e["event"] == "lost" and (e["lost"] or e["rate_limited"])
                and abs(ts_ns(e["ts"]) - exec_ts) < 1_000_000_000]
        assert near, "the join is missing and no lost line near the exec says so"
    # The flood itself is the container's own: started by its runtime, not entered.
    flood = [e for e in run.neighbour_events if "neighbour-flood-marker" in e.get("argv", [])]
    assert flood and not [e for e in flood if e.get("entered")]
    starts = [e for e in run.neighbour_events if e["event"] == "container_start" and e.get("container") == run.neighbour_id]
    assert len(starts) == 1, starts


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_metrics_count_the_app_events(run: Run):
    assert metric(run.metrics, "linnix_oom_kills_total", container=run.app_id) == 1
    execs = len(app_events(run, "exec"))
    assert metric(run.metrics, "linnix_events_total", kind="exec", container=run.app_id) == execs
    assert metric(run.metrics, "linnix_events_lost_total") == 0
