"""What the tracer benchmarks share: the spawn storm, the shipped binary,
/proc readings and summary statistics."""

from __future__ import annotations

import os
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
