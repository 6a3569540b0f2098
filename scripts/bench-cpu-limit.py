#!/usr/bin/env python3
"""What a CPU limit on the tracer does to a flood that starts the moment the
tracer is ready, as a pod's app containers do after the native sidecar's
startup probe (root; prints figures, asserts nothing).

For each limit (default: none, 200m, 500m) and round: `trace --cgroup` runs in
a cgroup v1 `cpu` cgroup with that CFS quota; when `/readyz` answers, a shell
in the traced cgroup runs `/bin/echo` in a loop for two seconds. Printed per
limit: execs reported, events the kernel dropped (the `lost` lines), and in
how many rounds anything was dropped. The run without a limit is the
reference: on this machine it drops nothing.

    scripts/bench-cpu-limit.py [--limits none,200m,500m] [--rounds 8] [--binary PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from benchlib import SHIPPED, tracer_binary, v2_root, wait_ready

METRICS = "127.0.0.1:9599"
CPU_V1 = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


def quota_of(limit: str) -> int:
    """CFS quota in µs per 100 ms period; -1 for no limit."""
    if limit == "none":
        return -1
    if limit.endswith("m"):
        return int(limit[:-1]) * PERIOD_US // 1000
    return int(float(limit) * PERIOD_US)


def one_round(binary: str, traced: Path, limited: Path, flood_seconds: int) -> tuple[int, int]:
    """(execs reported, events dropped) of one flood started at readiness."""
    command = [binary, "trace", "--cgroup", str(traced), "--metrics-addr", METRICS,
               "--output", "json", "--max-events-per-sec", "0"]
    # The shell moves itself into the limited cgroup, then becomes the tracer.
    proc = subprocess.Popen(["/bin/sh", "-c", f'echo $$ > {limited}/cgroup.procs; exec "$0" "$@"', *command],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: list[str] = []
    # Read as it comes: a reader that falls behind makes the tracer drop too.
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout.read().decode().splitlines()))
    reader.start()
    try:
        wait_ready(proc, METRICS)
        flood = (f"echo $$ > {traced}/cgroup.procs; end=$(( $(date +%s) + {flood_seconds} )); "
                 "while [ $(date +%s) -lt $end ]; do /bin/echo marker > /dev/null; done")
        subprocess.run(["/bin/sh", "-c", flood], check=True)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join()
    events = [json.loads(line) for line in lines]
    execs = sum(1 for e in events if e["event"] == "exec" and e.get("argv") == ["/bin/echo", "marker"])
    dropped = sum(e["lost"] + e["rate_limited"] for e in events if e["event"] == "lost")
    return execs, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="none,200m,500m")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=2, help="length of each flood")
    parser.add_argument("--binary", default=str(SHIPPED))
    args = parser.parse_args()
    binary = tracer_binary(args.binary)
    if not (CPU_V1 / "cgroup.procs").exists():
        raise SystemExit(f"no cgroup v1 cpu controller at {CPU_V1}: this benchmark sets a CFS quota there")
    traced = v2_root() / f"linnix-bench-cpu-{os.getpid()}"
    limited = CPU_V1 / f"linnix-bench-cpu-{os.getpid()}"
    traced.mkdir()
    limited.mkdir()
    try:
        print(f"{'limit':>6} | {'execs reported (median)':>23} | {'dropped (total)':>15} | rounds with drops")
        for limit in args.limits.split(","):
            (limited / "cpu.cfs_quota_us").write_text(str(quota_of(limit)))
            results = [one_round(binary, traced, limited, args.seconds) for _ in range(args.rounds)]
            execs = sorted(r[0] for r in results)[len(results) // 2]
            dropped = sum(r[1] for r in results)
            with_drops = sum(1 for r in results if r[1])
            print(f"{limit:>6} | {execs:>23} | {dropped:>15} | {with_drops} of {args.rounds}", flush=True)
    finally:
        for cgroup in (traced, limited):
            try:
                cgroup.rmdir()
            except OSError as e:
                print(f"cannot remove {cgroup}: {e}")


if __name__ == "__main__":
    main()
