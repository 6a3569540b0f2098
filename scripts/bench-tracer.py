#!/usr/bin/env python3
"""Spawn-storm benchmark of the tracer. Prints figures; asserts nothing.

N fork+exec+exit of /bin/true, run in a fresh cgroup v2 directory, timed:
  - with no tracer (baseline),
  - with `linnix-sidecar trace --cgroup DIR` tracing that cgroup,
  - with bpftrace running an equivalent exec/exit script as a peer.
Every traced storm is bracketed by two baseline storms and compared with
their mean: on a small VM the speed of the machine itself drifts by 10-20 %
within seconds, and only a baseline taken just before and just after cancels
that drift. The figure is the median of those per-round ratios over many
short rounds, printed with the spread of the rounds (interquartile range).

The tracer measured is the binary the container image ships (glibc
static-pie, built as scripts/build-images.sh does) unless --binary says
otherwise.

Figures: overhead ratio against the baseline for both tracers, events lost,
tracer CPU seconds per 1k events, the tracer's RSS after the storm and its
peak (reached once, while aya parses the kernel's BTF), attach time (process
start to /readyz answering 200), and kernel-to-stdout latency p50/p99 (the
event's kernel timestamp against the time its line was read from the
tracer's stdout).

Usage (root): scripts/bench-tracer.py [--spawns N] [--rounds R] [--binary PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from benchlib import SHIPPED, percentile, proc_status, quartiles, storm, tracer_binary, v2_root, wait_ready

METRICS = "127.0.0.1:19464"


def ts_ns(ts: str) -> int:
    whole, _, frac = ts.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp())
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(name: str) -> float:
    body = urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=2).read().decode()
    return sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith(name + " ") or l.startswith(name + "{"))


class Collector:
    """Reads a tracer's stdout during the storm as cheaply as a log shipper
    would: whole chunks, each stamped with the time it was read. Lines are
    parsed only after the storm, so the measuring does not compete with the
    workload for CPU (both tracers are read the same way)."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.chunks: list[tuple[int, bytes]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := os.read(self.fd, 1 << 20):
            self.chunks.append((time.time_ns(), chunk))

    def join(self) -> None:
        self.thread.join(timeout=10)

    def lines(self) -> list[tuple[int, bytes]]:
        """Complete lines, each with the time its last byte was read."""
        out, partial = [], b""
        for received, chunk in self.chunks:
            *complete, partial = (partial + chunk).split(b"\n")
            out.extend((received, line) for line in complete if line)
        return out


class Tracer:
    """linnix-sidecar tracing one cgroup, its stdout read by a thread."""

    def __init__(self, binary: str, cgroup: Path):
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "trace", "--cgroup", str(cgroup), "--metrics-addr", METRICS, "--max-events-per-sec", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        wait_ready(self.proc, METRICS)
        self.attach_ms = (time.perf_counter() - started) * 1000
        self.output = Collector(self.proc.stdout)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.output.join()

    def events(self) -> list[tuple[int, dict]]:
        """Every line, parsed, with the time it was read."""
        return [(received, json.loads(line)) for received, line in self.output.lines()]


class Bpftrace:
    """The peer: exec and exit of the same cgroup, printed like the tracer does."""

    def __init__(self, cgroup: Path):
        # Classic tracepoints need tracefs (linnix's tp_btf programs do not).
        if not Path("/sys/kernel/tracing/events").is_dir():
            subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
        program = (
            f'tracepoint:sched:sched_process_exec /cgroup == cgroupid("{cgroup}")/ '
            '{ printf("{\\"event\\":\\"exec\\",\\"pid\\":%d,\\"filename\\":\\"%s\\"}\\n", pid, str(args->filename)); } '
            f'tracepoint:sched:sched_process_exit /cgroup == cgroupid("{cgroup}") && pid == tid/ '
            '{ printf("{\\"event\\":\\"exit\\",\\"pid\\":%d,\\"code\\":%d}\\n", pid, curtask->exit_code >> 8); }'
        )
        self.proc = subprocess.Popen(["bpftrace", "-e", program], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        first = self.proc.stdout.readline()  # "Attaching N probes..."
        if not first.startswith(b"Attaching"):
            raise SystemExit(f"bpftrace did not start: {first!r}")
        self.output = Collector(self.proc.stdout)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        # Detaching its probes takes bpftrace seconds when others load the cores.
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.output.join()


def overhead_line(name: str, ratios: list[float], times: list[float]) -> str:
    q1, med, q3 = quartiles(ratios)
    return (f"  {name:9s} median {statistics.median(times) * 1000:8.1f} ms   overhead {100 * med:+6.2f} % "
            f"(rounds' interquartile range {100 * q1:+.1f} .. {100 * q3:+.1f} %)")


def main() -> int:
    parser = argparse.ArgumentParser(description="spawn-storm benchmark of linnix-sidecar")
    parser.add_argument("--spawns", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--binary", default=str(SHIPPED))
    args = parser.parse_args()
    tracer_binary(args.binary)

    cgroup = v2_root() / f"linnix-bench-{os.getpid()}"
    cgroup.mkdir()
    times: dict[str, list[float]] = {"baseline": [], "linnix": [], "bpftrace": []}
    ratios: dict[str, list[float]] = {"linnix": [], "bpftrace": []}
    attach, latencies, cpu, rss, steady_rss = [], [], [], [], []
    lost, missing, bpftrace_missing = 0.0, 0, 0
    has_bpftrace = shutil.which("bpftrace") is not None

    def baseline() -> float:
        times["baseline"].append(storm(cgroup, args.spawns))
        return times["baseline"][-1]

    def traced(name: str, elapsed: float, before: float) -> float:
        """Record a traced storm against the baselines around it; returns the one after."""
        after = baseline()
        times[name].append(elapsed)
        ratios[name].append(elapsed / ((before + after) / 2) - 1)
        return after

    try:
        before = baseline()
        for _ in range(args.rounds):
            tracer = Tracer(args.binary, cgroup)
            attach.append(tracer.attach_ms)
            cpu0 = proc_cpu_seconds(tracer.proc.pid)
            elapsed = storm(cgroup, args.spawns)
            time.sleep(0.5)  # let the last events reach stdout
            cpu.append(proc_cpu_seconds(tracer.proc.pid) - cpu0)
            rss.append(proc_status(tracer.proc.pid, "VmHWM"))
            steady_rss.append(proc_status(tracer.proc.pid, "VmRSS"))
            lost += metric("linnix_events_lost_total")
            tracer.stop()
            events = tracer.events()
            round_latencies = [(received - ts_ns(event["ts"])) / 1000 for received, event in events]
            missing += args.spawns - sum(event["event"] == "exec" for _, event in events)
            latencies.extend(round_latencies)
            cpu[-1] = cpu[-1] / max(len(round_latencies), 1) * 1000
            before = traced("linnix", elapsed, before)

            if has_bpftrace:
                peer = Bpftrace(cgroup)
                elapsed = storm(cgroup, args.spawns)
                time.sleep(0.5)
                peer.stop()
                bpftrace_lines = len(peer.output.lines())
                bpftrace_missing += 2 * args.spawns - min(bpftrace_lines, 2 * args.spawns)
                before = traced("bpftrace", elapsed, before)
    finally:
        cgroup.rmdir()

    base = statistics.median(times["baseline"])
    rate = args.spawns / base
    print(f"spawn storm: {args.spawns} fork+exec+exit of /bin/true x {args.rounds} rounds "
          f"(baseline {rate:.0f} spawns/s, {3 * rate:.0f} events/s)")
    print(f"  baseline  median {base * 1000:8.1f} ms")
    for name in ("linnix", "bpftrace"):
        if ratios[name]:
            print(overhead_line(name, ratios[name], times[name]))
    print(f"  linnix events lost (ring buffer full): {lost:.0f}; exec events missing from stdout: {missing}")
    if has_bpftrace:
        print(f"  bpftrace lines missing: {bpftrace_missing}")
    print(f"  linnix CPU: {statistics.median(cpu):.4f} s per 1k events")
    print(f"  linnix RSS after the storm: {max(steady_rss) / 1024:.1f} MiB "
          f"(peak {max(rss) / 1024:.1f} MiB, while the loader parses the kernel's BTF)")
    print(f"  attach (start to /readyz 200): median {statistics.median(attach):.0f} ms, max {max(attach):.0f} ms")
    print(f"  kernel-to-stdout latency: p50 {percentile(latencies, 50):.0f} us, p99 {percentile(latencies, 99):.0f} us "
          f"({len(latencies)} events)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
