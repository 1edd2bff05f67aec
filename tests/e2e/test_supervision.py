"""supd core, end to end: a real supd, real supctl, unit files dropped,
edited and deleted in its folder."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.e2e.conftest import Supd, pid_alive, wait_for

SLEEPER = """
[unit]
description = "sleeps"
[exec]
command = ["/bin/sleep", "1000"]
[stop]
timeout = "5s"
"""


def test_unit_file_lifecycle_drop_edit_delete(supd: Supd) -> None:
    supd.write_unit("a", SLEEPER)
    supd.start()
    st = supd.wait_state("a", "running")
    pid = st["pid"]
    assert pid_alive(pid)
    assert st["file"].endswith("units/a.toml")
    assert st["cgroup"].endswith("supd.slice/supd-a.scope")

    # a new file is picked up by the watcher
    supd.write_unit("b", SLEEPER)
    supd.wait_state("b", "running")

    # rewriting the same definition changes nothing
    supd.write_unit("a", SLEEPER)
    time.sleep(1.0)
    assert supd.status("a")["pid"] == pid

    # a real change restarts with the new definition
    supd.write_unit("a", SLEEPER.replace("1000", "2000"))
    wait_for(lambda: supd.status("a")["pid"] not in (None, pid), what="a restarted")
    new = supd.wait_state("a", "running")
    assert "2000" in " ".join(p["cmdline"] for p in new["processes"])
    wait_for(lambda: not pid_alive(pid), what="old pid gone")

    # deleting the file stops the unit and forgets it
    (supd.units / "b.toml").unlink()
    wait_for(lambda: supd.ctl("status", "b").returncode == 4, what="b forgotten")

    # list shows what is left
    r = supd.ctl("list", "--json")
    assert r.returncode == 0
    assert [u["name"] for u in json.loads(r.stdout)] == ["a"]


def test_status_exit_codes_and_user_stop_start(supd: Supd) -> None:
    supd.write_unit("s", SLEEPER)
    supd.start()
    supd.wait_state("s", "running")
    assert supd.ctl("status", "s").returncode == 0
    r = supd.ctl("stop", "s")
    assert r.returncode == 0, r.stderr
    st = supd.wait_state("s", "inactive")
    assert st["pid"] is None
    assert supd.ctl("status", "s").returncode == 3
    assert supd.ctl("status", "nope").returncode == 4
    # a user stop never triggers a restart
    time.sleep(1.0)
    assert supd.state_of("s") == "inactive"
    assert supd.ctl("start", "s").returncode == 0
    supd.wait_state("s", "running")
    human = supd.ctl("status", "s")
    assert "Main PID:" in human.stdout and "active (running)" in human.stdout


def test_crash_loop_backs_off_then_hits_start_limit(supd: Supd) -> None:
    supd.write_unit(
        "crash",
        """
[exec]
command = ["/bin/sh", "-c", "exit 3"]
[restart]
policy = "on-failure"
delay = "100ms"
max_delay = "10s"
limit_burst = 5
limit_interval = "60s"
""",
    )
    supd.start()
    st = supd.wait_state("crash", "failed", timeout=30)
    assert st["last_exit"]["code"] == 3
    assert st["restarts"] >= 4
    restarts = [e for e in supd.events("crash") if e["event"] == "restarting"]
    delays = [e["delay"] for e in restarts]
    assert len(delays) >= 4, restarts
    # exponential backoff: each delay doubles from 100ms
    for a, b in zip(delays, delays[1:]):
        assert b >= a * 1.9, delays
    assert delays[0] < 0.2
    failed = [e for e in supd.events("crash") if e["event"] == "failed"]
    assert failed and failed[-1]["reason"] == "start-limit"
    # only a user start clears `failed`
    time.sleep(0.5)
    assert supd.state_of("crash") == "failed"
    supd.ctl("start", "crash")
    wait_for(lambda: supd.status("crash")["restarts"] > st["restarts"] or supd.state_of("crash") != "failed", what="restarted by user")


def test_stop_escalates_to_sigkill(supd: Supd) -> None:
    supd.write_unit(
        "stubborn",
        """
[exec]
command = ["/bin/sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"]
[stop]
timeout = "1s"
""",
    )
    supd.start()
    st = supd.wait_state("stubborn", "running")
    pid = st["pid"]
    time.sleep(0.5)  # let the shell install its trap
    t0 = time.monotonic()
    assert supd.ctl("stop", "stubborn").returncode == 0
    supd.wait_state("stubborn", "inactive")
    assert time.monotonic() - t0 < 15
    assert not pid_alive(pid)
    kills = [e for e in supd.events("stubborn") if e["event"] == "kill"]
    assert kills and kills[0]["reason"] == "stop timeout"


def zombies_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def test_orphans_are_reaped_no_zombies(supd: Supd) -> None:
    # Each loop leaves an orphan that exits at once: it lands on supd (a child
    # subreaper), which must reap it.
    supd.write_unit(
        "zombies",
        """
[exec]
command = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.1 &) ; done; sleep 1000"]
""",
    )
    supd.start()
    supd.wait_state("zombies", "running")
    assert supd.proc is not None
    daemon = supd.proc.pid
    time.sleep(1.5)
    wait_for(lambda: not zombies_of(daemon), timeout=10, what="no zombies under supd")


def test_unit_exit_recorded_and_policy_no(supd: Supd) -> None:
    supd.write_unit("once", '[exec]\ncommand = ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"]\n')
    supd.start()
    st = supd.wait_state("once", "exited")
    assert st["last_exit"] == {"code": 7, "signal": None, "reason": "exit 7"}
    logs = supd.ctl("logs", "once", "-n", "10")
    assert "out" in logs.stdout and "err" in logs.stdout


def test_killed_by_signal_restarts_on_abnormal(supd: Supd) -> None:
    supd.write_unit(
        "abn",
        """
[exec]
command = ["/bin/sleep", "1000"]
[restart]
policy = "on-abnormal"
delay = "100ms"
""",
    )
    supd.start()
    pid = supd.wait_state("abn", "running")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: supd.status("abn")["pid"] not in (None, pid), what="restarted after SIGKILL")
    st = supd.wait_state("abn", "running")
    assert st["restarts"] == 1
    assert st["last_exit"]["signal"] == "SIGKILL"


def test_sighup_and_reload_rescan(supd: Supd) -> None:
    supd.start()
    # written "behind the watcher's back" is still found by an explicit reload
    (supd.units / "late.toml").write_text(SLEEPER)
    r = supd.ctl("reload", "--json")
    assert r.returncode == 0, r.stderr
    supd.wait_state("late", "running")


def test_editor_temp_files_ignored(supd: Supd) -> None:
    supd.start()
    for name in (".web.toml.swp", "web.toml~", ".hidden.toml", "#web.toml#"):
        (supd.units / name).write_text(SLEEPER)
    supd.write_unit("real", SLEEPER)
    supd.wait_state("real", "running")
    r = supd.ctl("list", "--json")
    assert [u["name"] for u in json.loads(r.stdout)] == ["real"]


def test_daemon_not_running_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "supervisor.cli.main", "--socket", str(tmp_path / "none.sock"), "list"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "none.sock" in r.stderr


def test_repeated_sigterm_does_not_abandon_units(supd: Supd) -> None:
    # timeout(1) and init systems may signal twice; supd must finish stopping.
    supd.write_unit(
        "slow",
        '[exec]\ncommand = ["/bin/sh", "-c", "trap \'\' TERM; while true; do sleep 1; done"]\n[stop]\ntimeout = "2s"\n',
    )
    supd.start()
    pid = supd.wait_state("slow", "running")["pid"]
    time.sleep(0.5)
    assert supd.proc is not None
    supd.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    supd.proc.send_signal(signal.SIGTERM)
    supd.proc.send_signal(signal.SIGINT)
    assert supd.proc.wait(timeout=30) == 0
    assert not pid_alive(pid)
    assert "shutdown_in_progress" in supd.daemon_log()
