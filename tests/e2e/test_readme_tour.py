"""The README's tour, as written, on the example units in units/: a real
supd on this repository's unit files (the busybox layer built as `make run`
builds it, the site from examples/www), driven by the real supctl with the
commands the README prints. If the README's tour changes, this test must
change with it."""

from __future__ import annotations

import importlib.util
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Supd, wait_for
from tests.helpers.waiting import TIME_SCALE

TOUR = [
    "supctl list",
    "supctl status web",
    "curl http://127.0.0.1:8080/            # the busybox httpd container",
    "supctl logs -f hello",
    "supctl events -f",
    "supctl freeze batch && supctl thaw batch",
    "supctl exec web -- ps",
]
WEB_PORT = 8080  # units/web.toml's, as the README curls it


def readme_tour() -> list[str]:
    """The indented block of commands after "While it runs, in another terminal:"."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("checkout's supctl, and prints what to try"))
    block = []
    for line in lines[start + 3:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def prepared_examples(root: Path) -> None:
    """units/ as the checkout has it, beside examples/ with `make run`'s busybox layer."""
    spec = importlib.util.spec_from_file_location("supd_examples_prepare", REPO / "examples" / "prepare.py")
    assert spec is not None and spec.loader is not None
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    prepare.build_busybox_rootfs(root / "examples" / "rootfs" / "busybox")
    shutil.copytree(REPO / "examples" / "www", root / "examples" / "www")
    for unit in sorted((REPO / "units").glob("*.toml")):
        shutil.copy2(unit, root / "units" / unit.name)


def test_the_readme_tour_works_as_written(supd: Supd) -> None:
    assert readme_tour() == TOUR, "the README's tour changed: follow it here"
    if port_taken(WEB_PORT):
        pytest.skip(f"port {WEB_PORT} is taken on this machine (a `make run` supd?): units/web.toml publishes it")
    prepared_examples(supd.root)
    supd.start()
    for unit in ("web", "hello", "batch"):
        supd.wait_state(unit, "running", timeout=60)

    listed = supd.ctl("list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in ("web", "hello", "batch", "flaky"))
    status = supd.ctl("status", "web")
    assert status.returncode == 0 and "running" in status.stdout and "8080" in status.stdout, status.stdout

    page = wait_for(lambda: _get(f"http://127.0.0.1:{WEB_PORT}/"), timeout=30, what="the web page on 8080")
    assert page == (REPO / "examples" / "www" / "index.html").read_text()

    _line_with(supd, "hello from hello at ", "logs", "-f", "hello")
    supd.ctl("restart", "hello")
    _line_with(supd, "hello", "events", "-f")  # the restart's events, at least

    assert supd.ctl("freeze", "batch").returncode == 0
    assert supd.status("batch")["state"] == "frozen"
    assert supd.ctl("thaw", "batch").returncode == 0
    assert supd.status("batch")["state"] == "running"

    ps = supd.ctl("exec", "web", "--", "ps")
    assert ps.returncode == 0 and "httpd" in ps.stdout, ps.stdout + ps.stderr


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return None


def _line_with(supd: Supd, text: str, *args: str) -> str:
    """The first line with `text` a following command prints; then it is
    ended, as by Ctrl-C. Read unbuffered: select() cannot see lines a
    buffered reader already holds."""
    with subprocess.Popen([sys.executable, "-m", "supervisor.cli.main", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, env=supd.env()) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            fd, seen = proc.stdout.fileno(), b""
            while True:
                for line in seen.decode(errors="replace").splitlines(keepends=True):
                    if text in line and line.endswith("\n"):
                        return line
                ready, _, _ = select.select([fd], [], [], 30 * TIME_SCALE)
                assert ready, f"supctl {' '.join(args)} printed no line with {text!r} in {30 * TIME_SCALE} s"
                chunk = os.read(fd, 65536)
                assert chunk, f"supctl {' '.join(args)} ended before a line with {text!r}: {seen!r}"
                seen += chunk
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
