"""The tracer flags the injector writes for per-pod settings, against the
real tracer's command line.

The injector turns `sidecar.linnix.io/log-level`, `max-events-per-sec`,
`threads` and `ignore-exec-probes` into `linnix-sidecar` flags; a flag the
tracer refuses would make it exit at start-up, and a native sidecar that
never starts holds back the app containers. So every argument list the
injector produces must parse in the tracer (`--help` last: clap rejects an
unknown flag or a bad value before it gets there), and the defaults the
injector reports must be the tracer's own.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest
import yaml



@pytest.fixture(scope="module")
def binaries(injector_bin, sidecar_bin) -> dict[str, pathlib.Path]:
    return {"linnix-injector": injector_bin, "linnix-sidecar": sidecar_bin}


def tracer_args(binaries, annotations: dict) -> tuple[list[str], dict]:
    """The args of the tracer `check` shows for a pod with `annotations`."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "annotations": {"sidecar.linnix.io/inject": "true", **annotations}},
        "spec": {"containers": [{"name": "web", "image": "registry.local/web:1"}]},
    }
    result = subprocess.run(
        [str(binaries["linnix-injector"]), "check", "-f", "-", "-o", "json"],
        input=yaml.safe_dump(pod), capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["warnings"] == [], report["warnings"]
    return report["tracer"]["args"], report["settings"]


def parses(binaries, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binaries["linnix-sidecar"]), *args, "--help"],
        capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize(
    "annotations",
    [
        {},
        {"sidecar.linnix.io/log-level": "debug"},
        {"sidecar.linnix.io/log-level": "warn,linnix_sidecar=trace,linnix_ebpf::reader=OFF"},
        {"sidecar.linnix.io/max-events-per-sec": "0"},
        {"sidecar.linnix.io/max-events-per-sec": "4294967295"},
        {"sidecar.linnix.io/threads": "true"},
        {"sidecar.linnix.io/threads": "false", "sidecar.linnix.io/ignore-exec-probes": "false"},
        {
            "sidecar.linnix.io/log-level": "error",
            "sidecar.linnix.io/max-events-per-sec": "250",
            "sidecar.linnix.io/threads": "true",
        },
    ],
    ids=["none", "level", "directives", "no-cap", "max-cap", "threads", "both-off", "combined"],
)
def test_the_tracer_accepts_the_flags_it_is_given(binaries, annotations):
    args, _ = tracer_args(binaries, annotations)
    result = parses(binaries, args)
    assert result.returncode == 0, f"{args}: {result.stderr}"


# The tracer gains --ignore-exec-probes in a change of its own. Until then
# the injector's flag is refused; strict, so that this fails (and the
# marker goes) as soon as the tracer accepts it.
def test_the_tracer_accepts_ignore_exec_probes(binaries):
    args, _ = tracer_args(binaries, {"sidecar.linnix.io/ignore-exec-probes": "true"})
    assert "--ignore-exec-probes" in args
    result = parses(binaries, args)
    assert result.returncode == 0, f"{args}: {result.stderr}"


def test_the_reported_defaults_are_the_tracers(binaries):
    help_text = subprocess.run(
        [str(binaries["linnix-sidecar"]), "--help"], capture_output=True, text=True, check=True,
    ).stdout

    def block(flag: str) -> str:
        """The help of one option: its line and the lines up to the next option."""
        lines = help_text.splitlines()
        start = next(i for i, l in enumerate(lines) if l.strip().startswith(flag))
        rest = []
        for line in lines[start + 1:]:
            if line.strip().startswith("-"):
                break
            rest.append(line)
        return "\n".join(rest)

    def default_of(flag: str) -> str:
        found = re.search(r"\[default: ([^\]]+)\]", block(flag))
        assert found, f"{flag} has no default in:\n{help_text}"
        return found.group(1)

    _, settings = tracer_args(binaries, {})
    assert settings["log-level"] == {"value": default_of("--log-level"), "origin": "config"}
    assert settings["max-events-per-sec"] == {
        "value": default_of("--max-events-per-sec"), "origin": "config",
    }
    # --threads is off unless given.
    assert "Also report thread creation" in block("--threads")
    assert "[default" not in block("--threads")
    assert settings["threads"] == {"value": "false", "origin": "config"}
