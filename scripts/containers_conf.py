#!/usr/bin/env python3
"""Sets the keys podman needs on this kind of host in containers.conf, and
nothing else.

    scripts/containers_conf.py [PATH]     # default /etc/containers/containers.conf

crun refuses this host's hybrid cgroups (`[engine] runtime = "runc"`), and the
default ulimits cannot be applied inside the sandbox (`[containers]
default_ulimits`). Every other line of the file (keys, tables, comments) is
kept as it is. The file is rewritten only when a key changes, through a
temporary sibling and a rename, and the result is parsed before it replaces
the original: a file this script cannot edit safely is left untouched and the
script fails with a message.
"""

import os
import re
import sys
import tomllib

WANTED = {
    ("containers", "default_ulimits"): '["nofile=1024:1024", "nproc=4096:4096"]',
    ("engine", "runtime"): '"runc"',
}

TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _key_re(key):
    return re.compile(r"^\s*" + re.escape(key) + r"\s*=")


def _value_end(lines, i):
    """Index of the last line of the value that starts on line i (arrays may
    span lines)."""
    depth = 0
    in_str = None
    j = i
    first = True
    while j < len(lines):
        text = lines[j].split("=", 1)[1] if first else lines[j]
        first = False
        for ch in text:
            if in_str:
                if ch == in_str:
                    in_str = None
            elif ch in "\"'":
                in_str = ch
            elif ch == "#":
                break
            elif ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
        if depth <= 0:
            return j
        j += 1
    raise ValueError(f"unterminated value starting on line {i + 1}")


def edit(text, wanted=WANTED):
    """The text with each (table, key) set to its value; other lines as they were."""
    lines = text.splitlines()
    for (table, key), value in wanted.items():
        want_line = f"{key} = {value}"
        current = None  # table of the line being read; None before any header
        header = None  # index of the [table] header
        found = None
        i = 0
        while i < len(lines):
            m = TABLE.match(lines[i])
            if m:
                current = m.group(1)
                if current == table and not lines[i].lstrip().startswith("[["):
                    header = i
                i += 1
                continue
            if current == table and _key_re(key).match(lines[i]):
                found = (i, _value_end(lines, i))
                break
            i += 1
        if found:
            start, stop = found
            if lines[start : stop + 1] != [want_line]:
                lines[start : stop + 1] = [want_line]
        elif header is not None:
            # Right after the header: blank lines and comments at the end of
            # the table belong visually to the next one.
            lines.insert(header + 1, want_line)
        else:
            if lines and lines[-1].strip():
                lines.append("")
            lines += [f"[{table}]", want_line]
    out = "\n".join(lines) + "\n"
    parsed = tomllib.loads(out)
    for (table, key), value in wanted.items():
        if parsed.get(table, {}).get(key) != tomllib.loads(f"v = {value}")["v"]:
            raise ValueError(f"[{table}] {key} did not take the value {value}")
    return out


def main(argv):
    path = argv[1] if len(argv) > 1 else "/etc/containers/containers.conf"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        text, mode = "", 0o644
    try:
        if text.strip():
            tomllib.loads(text)
        new = edit(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        print(f"{path}: not changed, cannot edit it safely: {e}", file=sys.stderr)
        return 1
    if new == text:
        return 0
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.linnix-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    print(f"{path}: set {', '.join(f'[{t}] {k}' for t, k in WANTED)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
