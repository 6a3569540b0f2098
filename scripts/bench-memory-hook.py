#!/usr/bin/env python3
"""Per-run cost of the memory-pressure hook, from the kernel's BPF stats.
Prints figures; asserts nothing.

handle_memcg_reclaim runs for every memcg reclaim on the node, in every
tracer, like the lifecycle programs run for every fork. What it costs where
it rejects (the reclaim is outside the traced pod) is what every other pod
pays; what it costs where it accepts is what the traced pod pays.

A writer streams a file through the page cache of a memory cgroup with a
64 MiB limit, so that its memcg reclaims at the limit hundreds of times per
second without ever being OOM-killed, while a spawn loop runs beside it.
Two tracers are measured in turn:
  - one on an empty cgroup: every reclaim and every fork is rejected;
  - one on the writer's cgroup: every reclaim is accepted (and at most one
    per --interval becomes an event).
With kernel.bpf_stats_enabled set (restored afterwards) the kernel sums
run time and run count per program; the figure is their ratio, printed for
the reclaim hook and, as the reference of the same run, for the fork
program (the existing filter); and for the memory sampler (one run per task
of the tracer's PID namespace each 2 s pass: here the host's, since the
benchmark's tracer runs outside a container), with the CPU time per second
each program took.

Usage (root): scripts/bench-memory-hook.py [--rounds R] [--binary PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRICS = "127.0.0.1:19465"
SYS_BPF = 321  # x86-64
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: ctypes.Array) -> int:
    return libc.syscall(SYS_BPF, cmd, attr, len(attr))


def prog_stats() -> dict[int, tuple[str, int, int]]:
    """id -> (name, run_time_ns, run_cnt) of every BPF program loaded."""
    out = {}
    prog_id = 0
    while True:
        attr = ctypes.create_string_buffer(128)
        ctypes.c_uint32.from_buffer(attr, 0).value = prog_id
        if bpf(BPF_PROG_GET_NEXT_ID, attr) < 0:
            return out
        prog_id = ctypes.c_uint32.from_buffer(attr, 4).value
        attr = ctypes.create_string_buffer(128)
        ctypes.c_uint32.from_buffer(attr, 0).value = prog_id
        fd = bpf(BPF_PROG_GET_FD_BY_ID, attr)
        if fd < 0:
            continue
        info = ctypes.create_string_buffer(256)
        attr = ctypes.create_string_buffer(128)
        ctypes.c_uint32.from_buffer(attr, 0).value = fd
        ctypes.c_uint32.from_buffer(attr, 4).value = len(info)
        ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(info)
        if bpf(BPF_OBJ_GET_INFO_BY_FD, attr) == 0:
            name = info.raw[64:80].split(b"\0")[0].decode()
            run_time = ctypes.c_uint64.from_buffer(info, 192).value
            run_cnt = ctypes.c_uint64.from_buffer(info, 200).value
            out[prog_id] = (name, run_time, run_cnt)
        os.close(fd)


def v2_root() -> Path:
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (root / "cgroup.procs").exists() and (root / "cgroup.threads").exists():
            return root
    raise SystemExit("no cgroup v2 hierarchy mounted")


class Cgroups:
    """A v2 cgroup and, where memory is a v1 controller, its v1 memcg."""

    def __init__(self, name: str, limit: int | None):
        v2 = v2_root()
        self.v2 = v2 / name
        self.v2.mkdir()
        self.v1 = None
        if limit is None:
            return
        controllers = (v2 / "cgroup.controllers").read_text().split()
        if "memory" in controllers:
            (v2 / "cgroup.subtree_control").write_text("+memory")
            (self.v2 / "memory.max").write_text(str(limit))
        else:
            self.v1 = Path("/sys/fs/cgroup/memory") / name
            self.v1.mkdir()
            (self.v1 / "memory.limit_in_bytes").write_text(str(limit))

    def join(self) -> str:
        """Shell words that move the shell itself into the cgroups."""
        dirs = [self.v2] + ([self.v1] if self.v1 else [])
        return "; ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs)

    def remove(self) -> None:
        for d in [self.v1, self.v2]:
            if d is None:
                continue
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def start_tracer(binary: Path, target: Path, interval: str) -> subprocess.Popen:
    tracer = subprocess.Popen(
        [str(binary), "--metrics-addr", METRICS, "--memory-pressure-interval", interval,
         "trace", "--cgroup", str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{METRICS}/readyz", timeout=1) as r:
                if r.status == 200:
                    return tracer
        except OSError:
            time.sleep(0.05)
    tracer.kill()
    raise SystemExit("the tracer did not become ready")


def workload(busy: Cgroups, scratch: Path, seconds: float) -> None:
    """Page-cache writes at the memcg limit and a spawn loop, for `seconds`."""
    writer = (f"{busy.join()}; end=$(($(date +%s) + {int(seconds)})); "
              f"while [ $(date +%s) -lt $end ]; do "
              f"dd if=/dev/zero of={scratch} bs=1M count=256 2>/dev/null; done")
    spawner = (f"{busy.join()}; end=$(($(date +%s) + {int(seconds)})); "
               f"while [ $(date +%s) -lt $end ]; do /bin/true; done")
    procs = [subprocess.Popen(["/bin/sh", "-c", s]) for s in (writer, spawner)]
    for p in procs:
        p.wait()


def measure(binary: Path, target: Path, busy: Cgroups, scratch: Path, seconds: float,
            interval: str) -> dict[str, tuple[int, int]]:
    before = prog_stats()
    tracer = start_tracer(binary, target, interval)
    try:
        workload(busy, scratch, seconds)
    finally:
        after = prog_stats()
        tracer.terminate()
        out, _ = tracer.communicate(timeout=20)
    result = {}
    for prog_id, (name, run_time, run_cnt) in after.items():
        # Kernel names are cut at 15 characters.
        if not (name.startswith("handle_memcg") or name in ("handle_fork", "sample_memory")):
            continue
        if prog_id in before:
            # Only the programs this tracer loaded.
            continue
        result[name] = (run_time, run_cnt)
    result["events"] = (out.count(b'"memory_pressure"'), 0)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--binary", type=Path, default=REPO / "target/debug/linnix-sidecar")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: BPF stats and cgroups need it")

    old = STATS.read_text().strip()
    tag = f"linnix-bench-mem-{os.getpid()}"
    empty = Cgroups(f"{tag}-empty", None)
    busy = Cgroups(f"{tag}-busy", 64 << 20)
    scratch = Path("/var/tmp") / f"{tag}.dat"
    totals = {"reject": {}, "accept": {}}
    events = {"reject": 0, "accept": 0}
    try:
        STATS.write_text("1")
        for _ in range(args.rounds):
            for mode, target in (("reject", empty.v2), ("accept", busy.v2)):
                r = measure(args.binary, target, busy, scratch, args.seconds, args.interval)
                events[mode] += r.pop("events")[0]
                for name, (t, n) in r.items():
                    pt, pn = totals[mode].get(name, (0, 0))
                    totals[mode][name] = (pt + t, pn + n)
    finally:
        STATS.write_text(old)
        scratch.unlink(missing_ok=True)
        busy.remove()
        empty.remove()

    print(f"{args.rounds} rounds of {args.seconds:.0f} s; kernel.bpf_stats_enabled restored to {old}")
    for mode in ("reject", "accept"):
        what = "tracer on an empty cgroup (rejects)" if mode == "reject" else \
            "tracer on the reclaiming cgroup (accepts)"
        print(f"{what}: memory_pressure events written: {events[mode]}")
        for name, (t, n) in sorted(totals[mode].items()):
            per = t / n if n else float("nan")
            busy = t / (args.rounds * args.seconds) / 1000
            print(f"  {name:<16} runs {n:>9}  {per:7.0f} ns per run  {busy:8.1f} us of CPU per second")


if __name__ == "__main__":
    main()
