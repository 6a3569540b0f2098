"""Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh):
the DOM it builds from a page, and a screenshot of it."""

from __future__ import annotations

import html.parser
import pathlib
import shutil
import subprocess

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium not found: run scripts/setup.sh (Debian package chromium)", pytrace=False)
    return path


def _run(page: pathlib.Path, profile: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def dump_dom(page: pathlib.Path, profile: pathlib.Path) -> str:
    return _run(page, profile, "--dump-dom").stdout


def screenshot(page: pathlib.Path, profile: pathlib.Path, png: pathlib.Path, size: str = "1440,900") -> None:
    png.unlink(missing_ok=True)
    _run(page, profile, f"--screenshot={png}", f"--window-size={size}", "--hide-scrollbars")
    assert png.is_file() and png.stat().st_size > 10_000, f"no screenshot at {png}"


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag = tag
        self.attrs = attrs
        self.classes = set(attrs.get("class", "").split())
        self.text = ""


class Dom(html.parser.HTMLParser):
    """The elements of a dumped DOM with their classes, attributes and the
    text directly inside them."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        e = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(e)
        if tag not in {"meta", "br", "img", "circle", "rect", "path", "line"}:
            self._open.append(e)

    def handle_startendtag(self, tag, attrs):
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data):
        if self._open:
            self._open[-1].text += data

    def having(self, *classes: str) -> list[Element]:
        return [e for e in self.elements if set(classes) <= e.classes]
