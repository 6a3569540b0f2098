"""`linnix-sidecar report` in a real browser: the real tracer traces a small
pod (tests/observability/pod_life.sh: two containers, a failed child, a
signal, an OOM kill after memory pressure, a process entering a running
container, a burst above the event cap), the report draws its log, and
headless Chromium loads the page. What the browser shows is checked against
the log; the screenshot is kept under tests/artifacts/report/."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from browser import Dom, dump_dom, screenshot

HERE = pathlib.Path(__file__).resolve().parent
ARTIFACTS = HERE.parent / "artifacts" / "report"


@pytest.fixture(scope="module")
def traced(sidecar_bin, tmp_path_factory):
    """The JSON lines of one real run of the tracer over pod_life.sh."""
    if os.geteuid() != 0:
        pytest.skip("the tracer loads BPF programs: run as root (scripts/test.sh charts)")
    out = tmp_path_factory.mktemp("trace")
    log = out / "pod_life.jsonl"
    with log.open("wb") as f:
        r = subprocess.run(
            [sidecar_bin, "trace", "--output", "json", "--memory-limit", "64M",
             "--max-events-per-sec", "200", "--", "sh", HERE / "pod_life.sh"],
            stdout=f, stderr=subprocess.PIPE, timeout=120,
        )
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    kinds = {e["event"] for e in events}
    # The workload must have shown what the page is tested on.
    for needed in ("container_start", "container_exit", "exit", "oom_kill", "memory_pressure", "lost", "cgroup_join"):
        assert needed in kinds, f"the traced run has no {needed} line: {sorted(kinds)}"
    assert any(e.get("entered") for e in events), "no process entered a running container"
    return log, events


def report(sidecar_bin, args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sidecar_bin, "report", *map(str, args)], input=stdin,
                          capture_output=True, timeout=60)


def count(events, kind):
    return sum(e["event"] == kind for e in events)


def test_the_browser_shows_what_the_log_says(sidecar_bin, traced, tmp_path):
    log, events = traced
    page = tmp_path / "report.html"
    r = report(sidecar_bin, [log, "-o", page])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr == b"", "a clean log gives no warning"
    source = page.read_text()
    # Self-contained: no script, stylesheet or image to fetch.
    for fetch in ("<script", "<link", "<img", "<iframe", "url(", "@import"):
        assert fetch not in source, fetch
    assert "https://" not in source and source.count("http://") == source.count("http://www.w3.org/2000/svg")

    dom = Dom(dump_dom(page, tmp_path / "profile"))
    lanes = dom.having("lane")
    containers = {e.get("container") for e in events if e["event"] != "lost"}
    assert len(lanes) == len(containers)
    assert {l.attrs["data-container"] for l in lanes} == {c or "" for c in containers}

    exits = [e for e in events if e["event"] == "exit"]
    marks = dom.having("mark", "exit")
    assert len(marks) == len(exits)
    # Codes and signals as the log gives them, mark for mark.
    assert sorted((m.attrs["data-code"], m.attrs["data-signal"]) for m in marks) == sorted(
        ("" if e["exit_code"] is None else str(e["exit_code"]), "" if e["signal"] is None else str(e["signal"]))
        for e in exits
    )
    for kind, cls in [("exec", "exec"), ("fork", "fork"), ("oom_kill", "oom"),
                      ("memory_pressure", "pressure"), ("container_start", "container-start"),
                      ("container_exit", "container-exit"), ("cgroup_join", "join")]:
        assert len(dom.having("mark", cls)) == count(events, kind), kind
    gaps = dom.having("gap")
    lost = [e for e in events if e["event"] == "lost"]
    assert [(g.attrs["data-lost"], g.attrs["data-rate-limited"]) for g in gaps] == [
        (str(e["lost"]), str(e["rate_limited"])) for e in lost
    ]

    # The OOM kill is marked on its victim's row, with its name in the table.
    victims = [e for e in events if e["event"] == "oom_kill"]
    assert any(t.text == "OOM kill" for t in dom.having("mark-label"))
    table = " ".join(e.text for e in dom.elements if e.tag == "td")
    for v in victims:
        assert f"OOM kill of {v['comm']} (pid {v['pid']})" in table
    assert "SIGKILL" in table and "exit 3" in table

    # Entered processes are set apart, in the lane of the container they entered.
    entered_ids = {e["exec_id"] for e in events if e.get("entered") and not e.get("exec_probe")}
    assert len(dom.having("proc", "entered")) == len(entered_ids) > 0
    assert any("entered from outside" in t.text for t in dom.having("group-head", "group-entered"))

    # The counts table matches the log, kind by kind.
    cells = {e.attrs["data-kind"]: int(e.text) for e in dom.elements if "data-kind" in e.attrs}
    assert cells == {k: count(events, k) for k in cells}

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTIFACTS / "report.png"
    screenshot(page, tmp_path / "profile", png)
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (1440, 900)
        rgb = img.convert("RGB")
        # The OOM cross (#e00000) and the lost-event lines (#c0392b) are drawn.
        colours = {c for _, c in rgb.getcolors(maxcolors=1 << 20)}
    assert any(r > 200 and g < 40 and b < 40 for r, g, b in colours), "no OOM red on the screenshot"
    assert any(abs(r - 0xC0) < 12 and abs(g - 0x39) < 12 and abs(b - 0x2B) < 12 for r, g, b in colours)


def test_bad_lines_from_kubectl_logs_are_reported(sidecar_bin, traced, tmp_path):
    """`kubectl logs` mixes the tracer's stderr into its stdout: those lines
    are counted and the first is named, on stderr and on the page."""
    log, events = traced
    lines = log.read_text().splitlines()
    noise = "2026-12-06T07:27:45.380840Z  WARN events dropped in the kernel"
    mixed = [lines[0], noise, *lines[1:5], "{truncated", *lines[5:]]
    r = report(sidecar_bin, ["-"], stdin="\n".join(mixed).encode())
    assert r.returncode == 0, r.stderr.decode()
    assert b"warning: 2 lines of stdin are not events of the tracer's schema; the first is line 2" in r.stderr
    page = tmp_path / "mixed.html"
    page.write_bytes(r.stdout)
    dom = Dom(dump_dom(page, tmp_path / "profile"))
    [notice] = dom.having("notice", "bad-lines")
    assert (notice.attrs["data-count"], notice.attrs["data-first-line"]) == ("2", "2")
    assert len(dom.having("mark", "exit")) == count(events, "exit")


@pytest.mark.parametrize(
    "payload",
    [b"", b"\n\n", b"not json at all\n", b"\xff\xfe\x00garbage\n", b'{"event":"exec"}\n'],
    ids=["empty", "blank", "text", "binary", "no-ts"],
)
def test_input_without_events_is_an_error_not_a_page(sidecar_bin, payload):
    r = report(sidecar_bin, [], stdin=payload)
    assert r.returncode == 2
    assert r.stdout == b""
    assert b"error: no events in stdin" in r.stderr


def test_unreadable_input_is_an_error(sidecar_bin, tmp_path):
    r = report(sidecar_bin, [tmp_path / "missing.jsonl"])
    assert r.returncode == 1
    assert b"cannot read" in r.stderr and b"missing.jsonl" in r.stderr


def test_tracer_options_are_refused(sidecar_bin, tmp_path):
    log = tmp_path / "one.jsonl"
    log.write_text('{"event":"exec","ts":"2026-11-22T10:15:01Z","pid":1,"comm":"a","exec_id":"1-1"}\n')
    r = report(sidecar_bin, ["--threads", log])
    assert r.returncode == 2
    assert b"takes none of the tracer's options: --threads" in r.stderr
    assert report(sidecar_bin, [log, "-o", tmp_path / "one.html"]).returncode == 0
