"""What `supctl status` and `list` say is true (issue 14's quirks), through
the real supctl against a real supd: uptime across a freeze, OOM kills per
run and in all, the reason of a start after `failed`, RESTARTS across a
supd restart, and `enabled` for a file that never said."""

from __future__ import annotations

import json
import sys
import time

from tests.e2e.conftest import Supd, wait_for

PY = sys.executable
SLEEPER = '[exec]\ncommand = ["/bin/sleep", "100000"]\n'


def test_a_thaw_keeps_the_uptime_of_the_run(supd: Supd) -> None:
    supd.write_unit("s", SLEEPER)
    supd.start()
    since = supd.wait_state("s", "running")["since"]
    time.sleep(1.2)
    assert supd.ctl("freeze", "s").returncode == 0
    assert supd.status("s")["since"] == since
    assert supd.ctl("thaw", "s").returncode == 0
    after = supd.status("s")
    assert after["state"] == "running" and after["since"] == since
    row = next(line for line in supd.ctl("list").stdout.splitlines() if line.startswith("s "))
    assert row.split()[3].endswith("s") and not row.split()[3].endswith("ms"), row  # ≥ 1s, not reset


def test_oom_kills_per_run_and_in_all(supd: Supd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran-once"
    # the first run grows past memory_max and is OOM-killed; the next one just sleeps
    hog = (
        f"import os, time\n"
        f"if not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        f"    b = bytearray()\n"
        f"    while True: b.extend(b'x' * 1048576)\n"
        f"time.sleep(100000)\n"
    )
    supd.write_unit(
        "hog",
        f'[exec]\ncommand = ["{PY}", "-c", {json.dumps(hog)}]\n'  # a JSON string is a TOML basic string
        + '[resources]\nmemory_max = "32M"\n[restart]\npolicy = "on-failure"\ndelay = "3s"\n',
    )
    supd.start()
    st = supd.wait_state("hog", "restarting", "failed", "exited", timeout=30)
    assert st["last_exit"]["reason"] == "oom-kill", st["last_exit"]
    assert st["oom_kills"] >= 1 and st["oom_kills_total"] == st["oom_kills"], st
    text = supd.ctl("status", "hog").stdout
    assert f"OOM kills: {st['oom_kills']} (total: {st['oom_kills']})" in text, text
    assert "Restarts: 1 (last exit: oom-kill)" in text, text
    first = st["oom_kills"]
    again = supd.wait_state("hog", "running", timeout=30)
    assert again["oom_kills"] == 0 and again["oom_kills_total"] == first, again
    assert isinstance(again["resources"]["oom_kills"], int)
    supd.stop()  # the total carries over a supd restart, as restarts do
    supd.start()
    resumed = supd.wait_state("hog", "running", timeout=30)
    assert resumed["oom_kills_total"] == first and resumed["restarts"] == 1, resumed


def test_a_start_after_failed_is_a_start_not_a_restart(supd: Supd) -> None:
    supd.write_unit(
        "f",
        '[exec]\ncommand = ["/bin/false"]\n[restart]\npolicy = "always"\ndelay = "100ms"\nlimit_burst = 2\nlimit_interval = "60s"\n',
    )
    supd.start()
    supd.wait_state("f", "failed", timeout=30)
    seen = len(supd.events("f"))
    supd.ctl("start", "f")  # it fails again; what matters is how its start was logged
    wait_for(lambda: [e for e in supd.events("f")[seen:] if e["event"] == "starting"], what="a new start")
    after = supd.events("f")[seen:]
    starting = [e for e in after if e["event"] == "starting"]
    assert starting[0]["reason"] == "start", after
    # the unit keeps failing and restarting meanwhile: f's lines after the first `seen`
    lines = [line for line in supd.ctl("events", "-n", "2000").stdout.splitlines() if " f: " in line]
    first_start = next(line for line in lines[seen:] if " f: starting (" in line)
    assert first_start.endswith("f: starting (start)"), lines[seen:]


def test_restarts_carry_over_a_supd_restart_as_documented(supd: Supd) -> None:
    supd.write_unit(
        "flaky",
        '[exec]\ncommand = ["/bin/sh", "-c", "sleep 0.3; exit 1"]\n[restart]\npolicy = "always"\ndelay = "100ms"\nmax_delay = "100ms"\nlimit_burst = 100\n',
    )
    supd.start()
    wait_for(lambda: supd.status("flaky")["restarts"] >= 2, what="two restarts")
    supd.stop()  # stops its units (--no-live-restore); the next supd starts them again
    supd.start()
    restarts = supd.status("flaky")["restarts"]
    assert restarts >= 2, f"RESTARTS began again at {restarts} after a supd restart"
    # a user start does not reset it either
    assert supd.ctl("restart", "flaky").returncode in (0, 1)
    assert supd.status("flaky")["restarts"] >= restarts


def test_enabled_is_shown_truthfully(supd: Supd) -> None:
    supd.write_unit("plain", SLEEPER)  # never says enabled
    supd.write_unit("off", '[unit]\nenabled = false\n' + SLEEPER)
    supd.write_unit("bad", '[exec]\ncommand = "not a list"\n')
    supd.start()
    supd.wait_state("plain", "running")
    assert "plain.toml; enabled)" in supd.ctl("status", "plain").stdout
    assert "off.toml; disabled)" in supd.ctl("status", "off").stdout
    bad = supd.ctl("status", "bad")
    assert "Loaded: error (" in bad.stdout and "bad.toml)" in bad.stdout.splitlines()[1], bad.stdout
    assert supd.status("bad")["enabled"] is None
    assert supd.status("plain")["enabled"] is True and supd.status("off")["enabled"] is False


def test_a_start_during_the_restart_delay_is_a_start(supd: Supd) -> None:
    supd.write_unit(
        "slow",
        '[exec]\ncommand = ["/bin/sh", "-c", "sleep 0.2; exit 1"]\n[restart]\npolicy = "always"\ndelay = "30s"\n',
    )
    supd.start()
    supd.wait_state("slow", "restarting", timeout=20)
    seen = len(supd.events("slow"))
    assert supd.ctl("start", "slow").returncode == 0
    starting = [e for e in supd.events("slow")[seen:] if e["event"] == "starting"]
    assert [e["reason"] for e in starting] == ["start"], starting
