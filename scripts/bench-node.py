#!/usr/bin/env python3
"""Node benchmark: what N traced pods cost the rest of the node. Prints
figures and writes a plot; asserts nothing.

One file of about 450 lines on purpose: a benchmark is read top to bottom
(the floor, the tracers, the rounds, the tables, the plot) and none of its
parts is used elsewhere; the /proc and fdinfo readers it shares with the
other benchmarks are in benchlib.py.

Every tracer's programs run for every fork, exec and exit on the node, so a
node with N traced pods pays N filters per process event of every pod, traced
or not. For each N (default 0, 1, 16, 64), in rounds:
  - N tracers (`linnix-sidecar trace --cgroup`, the binary the image ships
    unless --binary says otherwise), each on its own empty pod cgroup, while a
    spawn storm (fork+exec+exit of /bin/true, as scripts/bench-tracer.py runs
    it) runs in another, untraced cgroup;
  - the floor: N copies of an empty program (returns 0) on the same tp_btf
    hooks, from a bench-only BPF object built here with clang and loaded with
    libbpf: the least any tracer attached there can cost;
  - baseline storms with nothing attached, one before, between and after
    those two, each traced storm compared with the baselines on either side
    of it. On a small VM the machine's own speed drifts by 10-20 % within
    seconds; only adjacent baselines cancel that, and the median of many
    short rounds (printed with the interquartile range of the rounds) the
    rest. The order of floor and tracers alternates between rounds.
The figure is the storm's CPU time (user and system time of the shell and
its children, where the programs run): what the tracers cost the
neighbour. Its wall time is printed beside it; on a machine where others
use the cores it also counts the waits for a core, and is much noisier.
Then, per N, one storm each for the tracers and the floor with the kernel's
BPF run-time statistics on (BPF_ENABLE_STATS, the switch behind
kernel.bpf_stats_enabled; it is released when this process closes the
descriptor, so it is never left on): the run time per run of every program
the tracers attach, read from their descriptors' fdinfo. Every run in that
storm is one the filter rejects, since the traced cgroups are empty.

Per tracer: RSS after the storm, the load-time peak (VmHWM) and the kernel
memory of its maps and programs (`memlock` in their fdinfo).

Usage (root): scripts/bench-node.py [--tracers 0,1,16,64] [--rounds R]
              [--spawns S] [--binary PATH] [--plot FILE.svg|FILE.png]
The plot needs matplotlib (tests/requirements.txt): when the interpreter
running this script lacks it, the script runs itself again with
tests/.venv/bin/python, which scripts/setup.sh creates.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (REPO, SHIPPED, bpf_objects, describe_map, fdinfo, proc_status, program_names, quartiles,
                      smaps_rollup, stats_delta, storm, storm_times, tracer_binary, v2_root, wait_ready)

VENV_PYTHON = REPO / "tests/.venv/bin/python"
PORT_BASE = 19500
# The hooks the storm hits, as the tracer's lifecycle programs attach them.
FLOOR_HOOKS = ("sched_process_fork", "sched_process_exec", "sched_process_exit")


def ensure_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        # A venv's python is a symlink to the base interpreter: tell them apart by prefix.
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parents[1].resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        raise SystemExit("the plot needs matplotlib: scripts/setup.sh installs it into tests/.venv")


def floor_source() -> str:
    programs = "\n".join(f'SEC("tp_btf/{hook}") int floor_{hook.removeprefix("sched_process_")}(void *ctx) '
                         "{ return 0; }" for hook in FLOOR_HOOKS)
    return ('#define SEC(name) __attribute__((section(name), used))\n'
            'char LICENSE[] SEC("license") = "Dual BSD/GPL";\n' + programs + "\n")


class Libbpf:
    """The few libbpf calls the floor needs (libbpf.so.1, as bpftrace uses it)."""

    def __init__(self):
        try:
            lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError as e:
            raise SystemExit(f"the floor needs libbpf.so.1 (Debian: libbpf1): {e}")
        p = ctypes.c_void_p
        for name, res, args in (
            ("bpf_object__open_file", p, [ctypes.c_char_p, p]),
            ("bpf_object__load", ctypes.c_int, [p]),
            ("bpf_object__next_program", p, [p, p]),
            ("bpf_program__attach", p, [p]),
            ("bpf_program__fd", ctypes.c_int, [p]),
            ("bpf_program__name", ctypes.c_char_p, [p]),
            ("bpf_link__destroy", ctypes.c_int, [p]),
            ("bpf_enable_stats", ctypes.c_int, [ctypes.c_int]),
            ("libbpf_set_print", p, [p]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.libbpf_set_print(None)
        self.lib = lib

    def check(self, ok, what: str):
        if not ok:
            err = ctypes.get_errno()
            raise SystemExit(f"libbpf: cannot {what}: {os.strerror(err)}")
        return ok


class Floor:
    """`copies` loads of the empty programs, attached and detached at will
    (loading is slow, attaching is not)."""

    def __init__(self, bpf: Libbpf, obj_path: Path, copies: int):
        self.bpf = bpf
        self.programs: list[list[int]] = []  # per copy: program handles
        self.links: list[int] = []
        for _ in range(copies):
            obj = bpf.check(bpf.lib.bpf_object__open_file(str(obj_path).encode(), None), "open the floor object")
            bpf.check(bpf.lib.bpf_object__load(obj) == 0, "load the floor object")
            progs, prog = [], None
            while prog := bpf.lib.bpf_object__next_program(obj, prog):
                progs.append(prog)
            self.programs.append(progs)

    def attach(self, copies: int) -> None:
        for progs in self.programs[:copies]:
            for prog in progs:
                self.links.append(self.bpf.check(self.bpf.lib.bpf_program__attach(prog), "attach a floor program"))

    def detach(self) -> None:
        for link in self.links:
            self.bpf.lib.bpf_link__destroy(link)
        self.links.clear()

    def run_stats(self, copies: int) -> dict[str, tuple[int, int]]:
        """Program name → (run_time_ns, run_cnt), summed over the first `copies`."""
        out: dict[str, tuple[int, int]] = {}
        for progs in self.programs[:copies]:
            for prog in progs:
                name = self.bpf.lib.bpf_program__name(prog).decode()
                info = fdinfo(Path(f"/proc/self/fdinfo/{self.bpf.lib.bpf_program__fd(prog)}"))
                t, c = out.get(name, (0, 0))
                out[name] = (t + info.get("run_time_ns", 0), c + info.get("run_cnt", 0))
        return out


@dataclass
class Memory:
    rss_kib: int
    peak_kib: int
    # Proportional set size: pages shared with the other tracers (the
    # binary's code in the page cache) divided among them; private: its own.
    pss_kib: int
    private_kib: int
    kernel_kib: float
    maps: list[str] = field(default_factory=list)  # "type entries: memlock" per map


class Fleet:
    """N tracers, each on its own (empty) pod cgroup."""

    def __init__(self, binary: str, cgroups: list[Path]):
        self.procs: list[subprocess.Popen] = []
        self.attach_ms: list[float] = []
        try:
            for i, cgroup in enumerate(cgroups):
                started = time.perf_counter()
                addr = f"127.0.0.1:{PORT_BASE + i}"
                proc = subprocess.Popen(
                    [binary, "trace", "--cgroup", str(cgroup), "--metrics-addr", addr],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                self.procs.append(proc)
                wait_ready(proc, addr)
                self.attach_ms.append((time.perf_counter() - started) * 1000)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def memory(self) -> list[Memory]:
        out = []
        for proc in self.procs:
            progs, maps = bpf_objects(proc.pid)
            kernel = sum(p.get("memlock", 0) for p in progs.values()) + sum(m.get("memlock", 0) for m in maps.values())
            rollup = smaps_rollup(proc.pid)
            out.append(Memory(proc_status(proc.pid, "VmRSS"), proc_status(proc.pid, "VmHWM"), rollup.get("Pss", 0),
                              rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0), kernel / 1024,
                              sorted((describe_map(m) for m in maps.values()), key=len)))
        return out

    def run_stats(self) -> dict[str, tuple[int, int]]:
        """Program name → (run_time_ns, run_cnt), summed over the tracers."""
        names = program_names()
        out: dict[str, tuple[int, int]] = {}
        for proc in self.procs:
            progs, _ = bpf_objects(proc.pid)
            for info in progs.values():
                name = names.get(str(info.get("prog_tag")), f"tag {info.get('prog_tag')}")
                t, c = out.get(name, (0, 0))
                out[name] = (t + info.get("run_time_ns", 0), c + info.get("run_cnt", 0))
        return out


class Stats:
    """BPF run-time statistics on for as long as the context lasts."""

    def __init__(self, bpf: Libbpf):
        self.bpf = bpf

    def __enter__(self):
        self.fd = self.bpf.lib.bpf_enable_stats(0)  # BPF_STATS_RUN_TIME
        if self.fd < 0:
            raise SystemExit(f"cannot enable BPF stats: {os.strerror(-self.fd)}")
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


@dataclass
class Row:
    n: int
    # Per round, the storm's CPU time against its baselines' (the figure:
    # it is what the programs cost the neighbour, and does not count waiting
    # for a core someone else is using), and the same for its wall time.
    ours: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    ours_wall: list[float] = field(default_factory=list)
    floor_wall: list[float] = field(default_factory=list)
    ours_ns: dict[str, float] = field(default_factory=dict)
    floor_ns: dict[str, float] = field(default_factory=dict)
    memory: list[Memory] = field(default_factory=list)
    attach_ms: list[float] = field(default_factory=list)


def measure(args, binary: str, floor: Floor, bpf: Libbpf, storm_cg: Path, pods: list[Path]) -> tuple[list[Row], list[tuple[float, float]]]:
    baselines: list[tuple[float, float]] = []  # (wall, CPU) seconds

    def baseline() -> tuple[float, float]:
        baselines.append(storm_times(storm_cg, args.spawns))
        return baselines[-1]

    def with_floor(n: int) -> tuple[float, float]:
        floor.attach(n)
        try:
            return storm_times(storm_cg, args.spawns)
        finally:
            floor.detach()

    def with_tracers(n: int, row: Row) -> tuple[float, float]:
        fleet = Fleet(binary, pods[:n])
        try:
            time.sleep(0.2)  # let the start-up's page cache and CPU bursts settle
            times = storm_times(storm_cg, args.spawns)
            row.memory.extend(fleet.memory())
            row.attach_ms.extend(fleet.attach_ms)
            return times
        finally:
            fleet.stop()

    rows = []
    for n in args.tracers:
        started = time.monotonic()
        row = Row(n)
        before = baseline()
        for r in range(args.rounds):
            order = (("floor", lambda: with_floor(n)), ("ours", lambda: with_tracers(n, row)))
            for name, run in order if r % 2 == 0 else reversed(order):
                wall, cpu = run()
                after = baseline()
                getattr(row, name).append(cpu / ((before[1] + after[1]) / 2) - 1)
                getattr(row, name + "_wall").append(wall / ((before[0] + after[0]) / 2) - 1)
                before = after
        if n > 0:
            row.ours_ns, row.floor_ns = run_times(args, binary, floor, bpf, storm_cg, pods[:n])
        rows.append(row)
        report_row(row, time.monotonic() - started)
    return rows, baselines


def run_times(args, binary, floor, bpf, storm_cg, pods) -> tuple[dict[str, float], dict[str, float]]:
    """ns per run of each program, with the stats on for these two storms only."""
    n = len(pods)
    fleet = Fleet(binary, pods)
    try:
        with Stats(bpf):
            start = fleet.run_stats()
            storm(storm_cg, args.spawns)
            ours = stats_delta(start, fleet.run_stats())
    finally:
        fleet.stop()
    floor.attach(n)
    try:
        with Stats(bpf):
            start = floor.run_stats(n)
            storm(storm_cg, args.spawns)
            theirs = stats_delta(start, floor.run_stats(n))
    finally:
        floor.detach()
    per_run = lambda d: {name: t / c for name, (t, c) in sorted(d.items()) if c > 0}  # noqa: E731
    return per_run(ours), per_run(theirs)


def pct(values: list[float]) -> str:
    q1, med, q3 = quartiles(values)
    return f"{100 * med:+5.1f} % ({100 * q1:+.1f} .. {100 * q3:+.1f})"


def report_row(row: Row, seconds: float) -> None:
    print(f"N={row.n:3d}  CPU: tracers {pct(row.ours)}, floor {pct(row.floor)}; wall: tracers "
          f"{pct(row.ours_wall)}, floor {pct(row.floor_wall)}   ({seconds:.0f} s)", flush=True)
    for name, ns in row.ours_ns.items():
        print(f"        {name:28s} {ns:6.0f} ns per rejected run", flush=True)
    for name, ns in row.floor_ns.items():
        print(f"        {name:28s} {ns:6.0f} ns per run (floor)", flush=True)


def summary(args, rows: list[Row], baselines: list[tuple[float, float]]) -> None:
    base_wall = statistics.median(b[0] for b in baselines)
    base = statistics.median(b[1] for b in baselines)
    rate = args.spawns / base_wall
    print()
    print(f"untraced neighbour: {args.spawns} fork+exec+exit of /bin/true x {args.rounds} rounds per N "
          f"(baseline median {base_wall * 1000:.0f} ms wall, {base * 1000:.0f} ms CPU; {rate:.0f} spawns/s, "
          f"{3 * rate:.0f} events/s)")
    print("| tracers | neighbour's storm, CPU time: linnix | floor (empty programs) | linnix / floor "
          "| wall time: linnix | floor | BPF stats: ns per rejected run | floor: ns per run |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        floor_med = statistics.median(row.floor)
        ratio = f"{statistics.median(row.ours) / floor_med:.1f}x" if row.n and floor_med > 0 else "-"
        print(f"| {row.n} | {pct(row.ours)} | {pct(row.floor)} | {ratio} | {pct(row.ours_wall)} | {pct(row.floor_wall)} "
              f"| {lifecycle(row.ours_ns) or '-'} | {lifecycle(row.floor_ns) or '-'} |")
    print()
    print("| tracers | from the storm: ns per rejected event per tracer | RSS after the storm | PSS | private "
          "| load-time peak | kernel memory (maps, programs) |")
    print("|---|---|---|---|---|---|---|")
    med = statistics.median
    for row in rows:
        if not row.memory:
            continue
        mem = row.memory
        # The programs run in the storm's tasks: its extra CPU time is theirs.
        per_event = med(row.ours) * base * 1e9 / (row.n * 3 * args.spawns)
        print(f"| {row.n} | {per_event:.0f} | {med([m.rss_kib for m in mem]) / 1024:.1f} MiB "
              f"(max {max(m.rss_kib for m in mem) / 1024:.1f}) | {med([m.pss_kib for m in mem]) / 1024:.1f} MiB "
              f"| {med([m.private_kib for m in mem]) / 1024:.1f} MiB | {med([m.peak_kib for m in mem]) / 1024:.1f} MiB "
              f"(max {max(m.peak_kib for m in mem) / 1024:.1f}) | {med([m.kernel_kib for m in mem]):.0f} KiB |")
    mem = [m for row in rows for m in row.memory]
    attach = [a for row in rows for a in row.attach_ms]
    if mem:
        print("  a tracer's maps: " + "; ".join(mem[-1].maps))
        print(f"  attach (start to /readyz 200), tracers started one after another: median {med(attach):.0f} ms, "
              f"max {max(attach):.0f} ms")
    largest = max((row for row in rows if row.n and row.ours), key=lambda r: r.n, default=None)
    if largest:
        ns = med(largest.ours) * base * 1e9 / (largest.n * 3 * args.spawns)
        print(f"estimate: extra CPU = N x {ns:.0f} ns x (process events per second on the node); "
              f"e.g. 64 tracers and 1,000 spawns/s (3,000 events/s): {64 * ns * 3000 / 1e9 * 100:.1f} % of one CPU")


def lifecycle(per_run: dict[str, float]) -> str:
    """ns per run of the programs on the storm's hooks, as "fork 118, exec 115, exit 125"."""
    parts = []
    for hook in ("fork", "exec", "exit"):
        parts += [f"{hook} {ns:.0f}" for name, ns in per_run.items() if hook in name]
    return ", ".join(parts)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: a small SVG
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs = [row.n for row in rows]
    for name, label, marker in (("ours", "linnix tracers", "o"), ("floor", "empty programs (floor)", "s")):
        q = [quartiles(getattr(row, name)) for row in rows]
        med = [100 * m for _, m, _ in q]
        err = [[100 * (m - lo) for lo, m, _ in q], [100 * (hi - m) for _, m, hi in q]]
        ax.errorbar(xs, med, yerr=err, marker=marker, capsize=3, label=label)
    ax.axhline(0, color="grey", linewidth=0.5)
    step = max(1, max(xs) // 4)
    ax.set_xticks(range(0, max(xs) + 1, step))
    ax.set_xlabel("tracers on the node (each on its own pod cgroup)")
    ax.set_ylabel("untraced neighbour's spawn storm, % more CPU time")
    ax.set_title("Cost of N tracers for a pod they do not trace\n(median of rounds; bars: interquartile range)",
                 fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    print(f"plot: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description="node benchmark: N tracers against an untraced neighbour")
    parser.add_argument("--tracers", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 16, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spawns", type=int, default=1000)
    parser.add_argument("--binary", default=str(SHIPPED))
    parser.add_argument("--plot", type=Path, default=REPO / "docs/node-cost.svg")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-node.py must run as root (it loads BPF programs and creates cgroups)")
    ensure_matplotlib()
    binary = tracer_binary(args.binary)
    bpf = Libbpf()

    with tempfile.TemporaryDirectory() as tmp:
        source, obj = Path(tmp, "floor.bpf.c"), Path(tmp, "floor.bpf.o")
        source.write_text(floor_source())
        subprocess.run(["clang", "-target", "bpf", "-O2", "-g", "-c", str(source), "-o", str(obj)], check=True)
        floor = Floor(bpf, obj, max(args.tracers))

    parent = v2_root() / f"linnix-node-bench-{os.getpid()}"
    storm_cg = parent / "neighbour"
    pods = [parent / f"pod{i}" for i in range(max(args.tracers))]
    created = []
    try:
        for cg in (parent, storm_cg, *pods):
            cg.mkdir()
            created.append(cg)
        rows, baselines = measure(args, binary, floor, bpf, storm_cg, pods)
    finally:
        floor.detach()
        for cg in reversed(created):
            cg.rmdir()
    summary(args, rows, baselines)
    plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
