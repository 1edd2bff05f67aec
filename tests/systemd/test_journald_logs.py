"""log_driver = journald for real: supd runs as a transient service inside a
sandbox whose PID 1 is systemd 252 (with its journald), and with nothing set
it picks journald itself. A unit's stdout and stderr land in the journal with
SYSLOG_IDENTIFIER= and SUPD_UNIT= the unit's name, marked by stream and
priority, run markers beside them; `supctl logs` reads them back.

The sandbox is this module's own: the supd here cleans up stale supd-*.scope
units of its systemd, which must not disturb other systemd tests.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.systemd.conftest import booted, wait_for
from tests.systemd.sandbox import Sandbox

pytestmark = [pytest.mark.systemd, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
BASE = "/var/lib/supdtest-logs"
SERVICE = "supdtest-logs.service"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from booted(tmp_path_factory, "journald")


class Inside:
    def __init__(self, box: Sandbox) -> None:
        self.box = box

    def path(self, inner: str) -> Path:
        return Path(f"/proc/{self.box.leader_pid}/root") / inner.lstrip("/")

    def run(self, *argv: str) -> Any:
        return self.box.exec(list(argv), timeout=120)

    def ctl(self, *args: str) -> Any:
        return self.run(sys.executable, "-m", "supervisor.cli.main", "--socket", f"{BASE}/run/supd.sock", *args)

    def journal(self, *match: str) -> list[dict[str, Any]]:
        out = self.run("journalctl", "--no-pager", "-o", "json", *match).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def inside(box: Sandbox) -> Iterator[Inside]:
    inside = Inside(box)
    for folder in ("units", "state", "run"):
        inside.path(f"{BASE}/{folder}").mkdir(parents=True, exist_ok=True)
    inside.path(f"{BASE}/units/talk.toml").write_text(
        '[exec]\ncommand = ["/bin/sh", "-c", "echo out-line; echo err-line >&2; printf no-newline; exec sleep 1000"]\n'
    )
    started = inside.run(
        "systemd-run", f"--unit={SERVICE}", "-p", "Delegate=yes", "-p", f"WorkingDirectory={REPO}",
        "-E", f"PYTHONPATH={REPO}", "-E", "PYTHONDONTWRITEBYTECODE=1",
        sys.executable, "-m", "supervisor", "--units", f"{BASE}/units", "--state-dir", f"{BASE}/state",
        "--runtime-dir", f"{BASE}/run", "--log-format", "json", "--no-live-restore",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr

    def running() -> bool:
        r = inside.ctl("status", "talk", "--json")
        return r.returncode == 0 and json.loads(r.stdout)["state"] == "running"

    try:
        wait_for(running, what="talk running")
        yield inside
    finally:
        print(inside.run("journalctl", "--no-pager", "-u", SERVICE, "-n", "60").stdout)
        inside.run("systemctl", "stop", SERVICE)


def test_default_is_journald_and_lines_carry_the_unit(inside: Inside) -> None:
    def entries() -> list[dict[str, Any]] | None:
        found = inside.journal("SUPD_UNIT=talk")
        return found if {"out-line", "err-line"} <= {e.get("MESSAGE") for e in found} else None

    found = {e["MESSAGE"]: e for e in wait_for(entries, what="talk's lines in the journal")}
    assert found["out-line"]["SYSLOG_IDENTIFIER"] == "talk"
    assert (found["out-line"]["PRIORITY"], found["out-line"]["SUPD_STREAM"]) == ("6", "stdout")
    assert (found["err-line"]["PRIORITY"], found["err-line"]["SUPD_STREAM"]) == ("3", "stderr")
    markers = [m for m in found if m.startswith("-- started pid ")]
    assert len(markers) == 1 and found[markers[0]]["SUPD_STREAM"] == "supd"
    # journalctl's own matching on the identifier works too
    assert any(e.get("MESSAGE") == "out-line" for e in inside.journal("SYSLOG_IDENTIFIER=talk"))
    # supd is out of the data path: no log file was written
    assert not inside.path(f"{BASE}/state/logs/talk.log").exists()


def test_supctl_logs_reads_the_journal(inside: Inside) -> None:
    wait_for(lambda: "out-line" in inside.ctl("logs", "talk").stdout, what="supctl logs")
    plain = inside.ctl("logs", "talk").stdout.splitlines()
    assert plain[0].startswith("-- started pid ") and set(plain[1:]) >= {"out-line", "err-line"}, plain
    stamped = inside.ctl("logs", "-t", "talk").stdout.splitlines()
    assert all(re.fullmatch(rf"{STAMP} .+", line) for line in stamped), stamped
    assert inside.ctl("logs", "--since", "1h", "talk").stdout.splitlines() == plain
    assert inside.ctl("logs", "--until", "1h", "talk").stdout == ""
    as_json = [json.loads(x) for x in inside.ctl("logs", "--json", "talk").stdout.splitlines()]
    assert {"stream": "stderr", "line": "err-line"}.items() <= next(o for o in as_json if o["line"] == "err-line").items()

    # following: journalctl -f runs in supd for the client, and ends with it
    followed = inside.run(
        "timeout", "3", sys.executable, "-m", "supervisor.cli.main", "--socket", f"{BASE}/run/supd.sock",
        "logs", "-f", "-n", "1", "talk",
    )  # fmt: skip
    assert followed.returncode == 124 and followed.stdout.splitlines() == plain[-1:], followed
    wait_for(lambda: inside.run("pgrep", "-x", "journalctl").returncode == 1, what="journalctl -f ended")

    stopped = inside.ctl("stop", "talk")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: "-- exited: " in inside.ctl("logs", "-n", "1", "talk").stdout, what="the exited marker")
    # a line without its newline is held until the line ends or its stream
    # does (journald's own stream behaves so), then written, before the marker
    last = inside.ctl("logs", "-n", "2", "talk").stdout.splitlines()
    assert last[0] == "no-newline" and last[1].startswith("-- exited: "), last
