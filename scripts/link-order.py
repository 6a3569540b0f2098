#!/usr/bin/env python3
"""Writes sidecar/link-order.txt: the functions a running tracer executes
once it has started, which lld then lays out together (see sidecar/build.rs).

The kernel maps a binary's pages 64 KiB around each page a process touches,
so code that the event loop runs, spread over the whole binary, keeps most of
it resident. Laid out together it takes a few such windows.

How: the shipped binary (built with its symbol table) runs `trace --cgroup`
on a scratch pod cgroup. Once it is ready (start-up is over), bpftrace
records where it runs: a sample of its instruction pointer at 10 kHz, and
the instruction of every page fault it takes. Every few milliseconds its
code is paged out (process_madvise MADV_PAGEOUT), so that a function that
runs faults again on its next call and even a short, rare one is seen.
Meanwhile it does what a tracer does in its life: idle ticks (stats, memory
sampling), a storm of traced processes (also threads, a signal death and a
process that moves out of the pod), an untraced storm, scrapes of /metrics,
/healthz and /readyz. The functions at those addresses, named from the
symbol table, are written in the order of the binary, one per line, with
the names the list already held that the binary still has: a run sees less
of code that is already laid out together (one fault per 64 KiB window), so
reruns add to the list; --fresh starts it over. Nothing is injected into the
tracer: it runs its own code unchanged.

What runs only in a pod (the API client, container names, Kubernetes
Events) is not exercised here and keeps the compiler's place; so does
anything new. A stale list only costs memory: lld skips names it does not
find. Rerun this after changing the tracer or its dependencies.

Usage (root, x86-64): scripts/link-order.py [--binary PATH] [--out FILE] [--runs N] [--fresh]
Needs bpftrace (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from benchlib import REPO, SHIPPED, storm, tracer_binary, v2_root, wait_ready

ADDR = "127.0.0.1:19490"
HEADER = """\
# Functions a running tracer executes after start-up, in the binary's order:
# lld lays them out first (sidecar/build.rs). Made by scripts/link-order.py
# from the tree as it was then; names the compiler no longer produces are
# skipped, so a stale list only costs memory. Do not edit by hand.
"""

# User-mode instruction pointers of the tracer: sampled, and at each fault.
BPFTRACE = """
profile:hz:10000 /pid == {pid}/ {{ if (reg("ip") < 0x800000000000) {{ @ip[reg("ip")] = count(); }} }}
tracepoint:exceptions:page_fault_user /pid == {pid}/ {{ @ip[args->ip] = count(); }}
"""
PAGEOUT_EVERY_S = 0.002
SYS_PIDFD_OPEN, SYS_PROCESS_MADVISE, MADV_PAGEOUT = 434, 440, 21


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Pager:
    """Pages out the code of a process, from outside it."""

    def __init__(self, pid: int, start: int, length: int):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.pidfd = self.libc.syscall(SYS_PIDFD_OPEN, pid, 0)
        if self.pidfd < 0:
            raise SystemExit(f"pidfd_open: {os.strerror(ctypes.get_errno())}")
        self.iov = Iovec(start, length)

    def page_out(self) -> None:
        if self.libc.syscall(SYS_PROCESS_MADVISE, self.pidfd, ctypes.byref(self.iov), 1, MADV_PAGEOUT, 0) < 0:
            raise SystemExit(f"process_madvise: {os.strerror(ctypes.get_errno())}")


def functions(binary: str) -> dict[int, list[str]]:
    """ELF address → names of the functions there, from the symbol table."""
    out: dict[int, list[str]] = {}
    listing = subprocess.run(["nm", "--defined-only", "-S", binary], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tT" and int(fields[1], 16) > 0:
            out.setdefault(int(fields[0], 16), []).append(fields[3])
    if not out:
        raise SystemExit(f"{binary} has no symbol table: build it with the release profile (strip = \"debuginfo\")")
    return out


def listed(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def text_mapping(pid: int, binary: str) -> tuple[int, int, int]:
    """(first page of the binary, start, length of its code) in process `pid`."""
    real = os.path.realpath(binary)
    base, code = None, None
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == real:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if int(fields[2], 16) == 0:
                base = start
            if "x" in fields[1]:
                code = (start, end - start)
    if base is None or code is None:
        raise SystemExit(f"{binary} is not mapped in process {pid}")
    return base, *code


def ran_at(output: str) -> set[int]:
    """The addresses in bpftrace's print of @ip."""
    out = set()
    for line in output.splitlines():
        if line.startswith("@ip["):
            out.add(int(line[4:line.index("]")]))
    return out


def life_of_a_tracer(pod: Path, other: Path) -> None:
    """What a tracer does after start-up, each kind of work a few times."""
    for _ in range(5):
        storm(pod, 300)
        storm(other, 300)
        for path in ("/metrics", "/healthz", "/readyz", "/nothing"):
            try:
                urllib.request.urlopen(f"http://{ADDR}{path}", timeout=5).read()
            except OSError:
                pass
        script = (f"echo $$ > {pod}/cgroup.procs; "
                  "python3 -c 'import threading; t = threading.Thread(target=print); t.start(); t.join()'; "
                  "sh -c 'kill -9 $$'; sh -c 'exit 3'; "
                  f"sh -c 'echo $$ > {other}/cgroup.procs; /bin/true'")
        # Its deaths are the point: what the shell says about them is not.
        subprocess.run(["/bin/sh", "-c", script], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The stats tick (1 s) and the memory sampler (2 s) run meanwhile.
        time.sleep(2.5)


def record_run(binary: str) -> set[int]:
    """Addresses (in the binary) where one tracer ran after its start-up."""
    root = v2_root()
    scratch = root / f"linnix-link-order-{os.getpid()}"
    pod, other = scratch / "pod", scratch / "other"
    pod.mkdir(parents=True)
    other.mkdir()
    tracer = subprocess.Popen([binary, "trace", "--threads", "--cgroup", str(pod), "--metrics-addr", ADDR],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recorder = None
    try:
        wait_ready(tracer, ADDR)
        base, code_start, code_len = text_mapping(tracer.pid, binary)
        recorder = subprocess.Popen(["bpftrace", "-e", BPFTRACE.format(pid=tracer.pid)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # bpftrace attaches
        pager = Pager(tracer.pid, code_start, code_len)
        stop = threading.Event()
        failed: list[BaseException] = []

        def page_out_until_stopped() -> None:
            try:
                while not stop.wait(PAGEOUT_EVERY_S):
                    pager.page_out()
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                failed.append(e)

        paging = threading.Thread(target=page_out_until_stopped)
        paging.start()
        try:
            life_of_a_tracer(pod, other)
        finally:
            stop.set()
            paging.join()
        if failed:
            # Without paging out, a run sees a fraction of what runs.
            raise SystemExit(f"paging out the tracer's code stopped: {failed[0]}")
        recorder.send_signal(signal.SIGINT)
        output, errors = recorder.communicate(timeout=60)
        if recorder.returncode != 0:
            raise SystemExit(f"bpftrace failed: {errors.strip()}")
        return {ip - base for ip in ran_at(output) if code_start <= ip < code_start + code_len}
    finally:
        if recorder and recorder.poll() is None:
            recorder.kill()
        tracer.send_signal(signal.SIGTERM)
        tracer.wait(timeout=30)
        for cgroup in (pod, other, scratch):
            cgroup.rmdir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(SHIPPED))
    parser.add_argument("--out", type=Path, default=REPO / "sidecar/link-order.txt")
    # Each run sees most of what runs; the union of a few sees the rest.
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--fresh", action="store_true",
                        help="forget the names already in --out (by default those the binary still has stay)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the tracer loads BPF programs, and so does this")
    binary = tracer_binary(args.binary)
    names = functions(binary)

    hit: set[int] = set()
    for run in range(args.runs):
        hit |= record_run(binary)
        print(f"run {run + 1}: {len(hit)} addresses so far", file=sys.stderr)
    starts = sorted(names)
    ran = sorted({starts[i - 1] for i in (bisect.bisect_right(starts, ip) for ip in hit) if i > 0})
    ran_names = {name for addr in ran for name in names[addr]}
    # A run sees less of what is already laid out together (one fault per
    # 64 KiB window), so what earlier runs found stays, while it exists.
    earlier = set() if args.fresh or not args.out.exists() else listed(args.out)
    in_binary = {name for at in names.values() for name in at}
    wanted = ran_names | (earlier & in_binary)
    lines = [name for addr in sorted(names) for name in names[addr] if name in wanted]
    args.out.write_text(HEADER + "".join(f"{name}\n" for name in lines))
    print(f"{len(ran)} of {len(names)} functions ran after start-up; {len(lines)} names listed, "
          f"{len(earlier - in_binary)} earlier ones dropped (no longer in the binary); wrote {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
