"""What the tracer benchmarks share: the spawn storm, the shipped binary,
/proc readings (also of the BPF objects a process holds) and summary
statistics."""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The binary the container image ships (scripts/build-images.sh builds it so).
SHIPPED = REPO / "target/x86_64-unknown-linux-gnu/release/linnix-sidecar"


def build_shipped() -> None:
    env = dict(os.environ, RUSTFLAGS=os.environ.get("RUSTFLAGS", "") + " -C target-feature=+crt-static")
    subprocess.run(["cargo", "build", "--release", "--locked", "--target", "x86_64-unknown-linux-gnu",
                    "-p", "linnix-sidecar"], cwd=REPO, env=env, check=True)


def tracer_binary(path: str) -> str:
    """`path`, building the shipped binary first when that is the one asked for."""
    if not Path(path).exists():
        if Path(path) != SHIPPED:
            raise SystemExit(f"{path} does not exist")
        build_shipped()
    return path


def v2_root() -> Path:
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (root / "cgroup.procs").exists() and (root / "cgroup.threads").exists():
            return root
    raise SystemExit("no cgroup v2 hierarchy mounted")


def storm(cgroup: Path, spawns: int) -> float:
    """Seconds taken by `spawns` fork+exec+exit of /bin/true inside `cgroup`."""
    script = f'echo $$ > {cgroup}/cgroup.procs; i=0; while [ $i -lt {spawns} ]; do /bin/true; i=$((i+1)); done'
    start = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", script], check=True)
    return time.perf_counter() - start


def storm_times(cgroup: Path, spawns: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds of a storm. The CPU time is the user and
    system time of the shell and every /bin/true it waited for, the BPF
    programs they ran in the kernel included; unlike the wall time it does
    not count the time they waited for a core that others were using."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = storm(cgroup, spawns)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def proc_status(pid: int, key: str) -> int:
    """A kB figure of /proc/PID/status (VmRSS, VmHWM, ...); 0 when absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def fdinfo(path: Path) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        out[key] = int(value) if value.isdigit() else value
    return out


def bpf_objects(pid: int) -> tuple[dict[int, dict], dict[int, dict]]:
    """The BPF programs and maps a process holds: id → fdinfo."""
    progs, maps = {}, {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            if target == "anon_inode:bpf-prog":
                info = fdinfo(Path(f"/proc/{pid}/fdinfo/{fd.name}"))
                progs[info["prog_id"]] = info
            elif target == "anon_inode:bpf-map":
                info = fdinfo(Path(f"/proc/{pid}/fdinfo/{fd.name}"))
                maps[info["map_id"]] = info
        except (FileNotFoundError, KeyError):
            pass
    return progs, maps


def program_names() -> dict[str, str]:
    """Program tag → name, from the JIT's kallsyms (bpf_prog_<tag>_<name>;
    the name is the program's whole BTF name, not the 15 characters of
    bpf_prog_info)."""
    names = {}
    for line in Path("/proc/kallsyms").read_text().splitlines():
        if m := re.search(r" bpf_prog_([0-9a-f]{16})_(\w+)", line):
            names[m.group(1)] = m.group(2)
    return names


def smaps_rollup(pid: int) -> dict[str, int]:
    """kB figures of /proc/PID/smaps_rollup."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


# include/uapi/linux/bpf.h, enum bpf_map_type: the types the tracer uses.
MAP_TYPES = {1: "hash", 2: "array", 6: "percpu_array", 9: "lru_hash", 27: "ringbuf"}


def describe_map(info: dict) -> str:
    kind = MAP_TYPES.get(info.get("map_type"), f"type {info.get('map_type')}")
    return f"{kind} x{info.get('max_entries')} {info.get('memlock', 0) / 1024:.1f} KiB"


def stats_delta(before: dict, after: dict) -> dict[str, tuple[int, int]]:
    return {name: (t - before.get(name, (0, 0))[0], c - before.get(name, (0, 0))[1]) for name, (t, c) in after.items()}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median, third quartile."""
    if len(values) > 1:
        q1, med, q3 = statistics.quantiles(values, n=4)
        return q1, med, q3
    return (values[0],) * 3 if values else (float("nan"),) * 3


def wait_ready(proc: subprocess.Popen, addr: str, timeout: float = 30) -> None:
    """Until the tracer at `addr` answers /readyz (its programs attached);
    SystemExit if it exits first or takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"linnix-sidecar exited with {proc.returncode} before it was ready")
        try:
            if urllib.request.urlopen(f"http://{addr}/readyz", timeout=1).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.001)
    raise SystemExit(f"linnix-sidecar was not ready after {timeout:.0f} s")
