"""scripts/containers_conf.py: the set-up changes only the keys podman needs."""

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "containers_conf.py"

spec = importlib.util.spec_from_file_location("containers_conf", SCRIPT)
containers_conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(containers_conf)

WANT_ULIMITS = ["nofile=1024:1024", "nproc=4096:4096"]

EXISTING = """\
# site configuration, keep
[containers]
log_driver = "k8s-file"
default_ulimits = [
  "nofile=65535:65535",  # a comment inside
]
tz = "local"

[engine]
runtime = "crun"   # was crun
events_logger = "file"

[engine.runtimes]
runc = ["/usr/bin/runc"]

[network]
network_backend = "netavark"
"""


def run(path):
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True
    )


def test_only_the_needed_keys_change(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text(EXISTING)
    os.chmod(conf, 0o640)
    assert run(conf).returncode == 0
    new = conf.read_text()
    parsed = tomllib.loads(new)
    assert parsed["containers"]["default_ulimits"] == WANT_ULIMITS
    assert parsed["engine"]["runtime"] == "runc"
    # Everything else survives, comments included.
    assert parsed["containers"]["log_driver"] == "k8s-file"
    assert parsed["containers"]["tz"] == "local"
    assert parsed["engine"]["events_logger"] == "file"
    assert parsed["engine"]["runtimes"]["runc"] == ["/usr/bin/runc"]
    assert parsed["network"]["network_backend"] == "netavark"
    assert new.startswith("# site configuration, keep\n")
    old_lines = [l for l in EXISTING.splitlines() if "ulimits" not in l and "runtime =" not in l
                 and "nofile=65535" not in l and l.strip() != "]"]
    for line in old_lines:
        assert line in new.splitlines(), line
    assert os.stat(conf).st_mode & 0o777 == 0o640
    # Idempotent: a second run leaves the file byte for byte.
    before = conf.read_bytes()
    mtime = conf.stat().st_mtime_ns
    assert run(conf).returncode == 0
    assert conf.read_bytes() == before
    assert conf.stat().st_mtime_ns == mtime


def test_missing_tables_and_missing_file(tmp_path):
    conf = tmp_path / "sub" / "containers.conf"
    assert run(conf).returncode == 0
    parsed = tomllib.loads(conf.read_text())
    assert parsed == {"containers": {"default_ulimits": WANT_ULIMITS}, "engine": {"runtime": "runc"}}

    conf = tmp_path / "other.conf"
    conf.write_text('[engine]\nevents_logger = "file"\n')
    assert run(conf).returncode == 0
    parsed = tomllib.loads(conf.read_text())
    assert parsed["engine"] == {"runtime": "runc", "events_logger": "file"}
    assert parsed["containers"]["default_ulimits"] == WANT_ULIMITS


def test_a_file_it_cannot_read_is_left_alone(tmp_path):
    conf = tmp_path / "containers.conf"
    broken = '[engine\nruntime = "crun"\n'
    conf.write_text(broken)
    r = run(conf)
    assert r.returncode == 1
    assert "not changed" in r.stderr
    assert conf.read_text() == broken


def test_setup_uses_it_and_writes_no_file_itself():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "scripts/containers_conf.py /etc/containers/containers.conf" in setup
    assert "cat >" not in setup


def test_edit_keeps_keys_of_the_same_name_in_other_tables():
    text = '[engine.runtimes]\nruntime = "x"\n[engine]\n'
    parsed = tomllib.loads(containers_conf.edit(text))
    assert parsed["engine"]["runtimes"]["runtime"] == "x"
    assert parsed["engine"]["runtime"] == "runc"


def test_certs_readme_writes_keys_only_where_git_ignores_them():
    import re

    readme = (ROOT / "certs" / "README.md").read_text()
    outs = re.findall(r"--out\s+(\S+)", readme)
    assert outs, "certs/README.md shows no --out"
    for out in outs:
        key = Path(out) / "tls.key"
        if key.is_absolute():
            assert not key.is_relative_to(ROOT), key
            continue
        r = subprocess.run(["git", "check-ignore", "-q", str(key)], cwd=ROOT)
        assert r.returncode == 0, f"{key} (from certs/README.md) is not ignored by git"
