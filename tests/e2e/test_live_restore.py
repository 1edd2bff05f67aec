"""Live-restore and crash safety: a new supd re-adopts what an old one left
running, by pid AND start time AND scope, and restarts what died meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from supervisor import procfs
from tests.e2e.conftest import Supd, pid_alive, wait_for

SLEEPER = '[exec]\ncommand = ["/bin/sleep", "100000"]\n[restart]\npolicy = "always"\ndelay = "100ms"\n[stop]\ntimeout = "3s"\n'


def gone(pid: int) -> bool:
    """Exited (reaped or a zombie nobody reaped yet)."""
    return not pid_alive(pid)


def running_pids(supd: Supd) -> dict[str, int]:
    units = json.loads(supd.ctl("list", "--json").stdout)
    return {u["name"]: u["pid"] for u in units if u["state"] == "running"}


def shut_down_for_real(supd: Supd) -> None:
    """End a test: a supd without live-restore stops every unit on SIGTERM."""
    supd.stop(signal.SIGKILL)
    supd.extra_args = ["--no-live-restore"]
    supd.start()
    supd.stop(signal.SIGTERM)


def test_sigkill_of_supd_with_20_units_all_readopted_same_pids(supd: Supd) -> None:
    for i in range(20):
        supd.write_unit(f"u{i:02d}", SLEEPER)
    supd.start()
    before = wait_for(lambda: (p := running_pids(supd)) and len(p) == 20 and p, timeout=60, what="20 running")
    supd.stop(signal.SIGKILL)
    for pid in before.values():
        os.kill(pid, 0)  # every unit outlived supd
    supd.start()
    after = wait_for(lambda: (p := running_pids(supd)) and len(p) == 20 and p, timeout=60, what="20 re-adopted")
    assert after == before
    adopted = [e for e in supd.events() if e["event"] == "running" and e["reason"] == "adopted"]
    assert len(adopted) == 20
    # supervised from then on: an exit after re-adoption is still detected
    os.kill(before["u00"], signal.SIGKILL)
    wait_for(lambda: running_pids(supd).get("u00") not in (None, before["u00"]), what="u00 restarted")
    assert supd.status("u00")["restarts"] == 1
    supd.stop(signal.SIGTERM)  # live_restore is off: stops every unit cleanly
    for pid in list(after.values())[1:]:
        wait_for(lambda pid=pid: gone(pid), timeout=30, what=f"pid {pid} stopped")


def test_live_restore_sigterm_keeps_units_and_history(supd: Supd) -> None:
    supd.extra_args = ["--live-restore"]
    supd.write_unit("keep", SLEEPER)
    supd.write_unit(
        "crashy", '[exec]\ncommand = ["/bin/sh", "-c", "sleep 0.3; exit 1"]\n[restart]\npolicy = "on-failure"\ndelay = "100ms"\nlimit_burst = 100\n'
    )
    supd.start()
    pid = supd.wait_state("keep", "running")["pid"]
    wait_for(lambda: supd.status("crashy")["restarts"] >= 2, what="crashy restarted twice")
    assert supd.stop(signal.SIGTERM) == 0
    os.kill(pid, 0)
    supd.start()
    st = supd.wait_state("keep", "running")
    assert st["pid"] == pid
    assert supd.status("crashy")["restarts"] >= 2  # counters survive
    shut_down_for_real(supd)


def test_unit_that_died_while_supd_was_down_is_restarted(supd: Supd) -> None:
    supd.write_unit("d", SLEEPER)
    supd.start()
    pid = supd.wait_state("d", "running")["pid"]
    supd.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), what=f"pid {pid} gone")
    supd.start()
    st = supd.wait_state("d", "running")
    assert st["pid"] != pid
    assert st["restarts"] == 1
    ended = [e for e in supd.events("d") if e["event"] == "ended"]
    assert ended and "not running" in ended[0]["reason"]


def test_process_started_just_before_a_kill_of_supd_is_readopted(supd: Supd) -> None:
    # The batched record of "running" never reaches the disk (its write is
    # stalled), as when supd is killed right after the exec: the record
    # written just before the exec still names the process.
    old_env = supd.env
    supd.env = lambda: dict(old_env(), SUPD_FAILPOINTS="state.save@late=delay(600s)")  # type: ignore[method-assign]
    supd.write_unit("late", SLEEPER)
    supd.start()
    pid = supd.wait_state("late", "running")["pid"]
    record = json.loads((supd.state / "state" / "late.json").read_text())["unit"]
    assert (record["state"], record["pid"]) == ("starting", pid)
    supd.stop(signal.SIGKILL)
    supd.env = old_env  # type: ignore[method-assign]
    supd.start()
    st = supd.wait_state("late", "running")
    assert st["pid"] == pid and st["restarts"] == 0
    assert [e for e in supd.events("late") if e["reason"] == "adopted"]
    shut_down_for_real(supd)


def test_unit_whose_launch_never_reached_exec_starts_again(supd: Supd) -> None:
    # A record of a launch whose process is gone: it was being started when
    # supd stopped, so it starts again (not "ended", whatever its policy).
    supd.write_unit("again", '[exec]\ncommand = ["/bin/sleep", "100000"]\n')
    supd.start()
    pid = supd.wait_state("again", "running")["pid"]
    supd.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), what=f"pid {pid} gone")
    path = supd.state / "state" / "again.json"
    data = json.loads(path.read_text())
    data["unit"]["state"] = "starting"
    path.write_text(json.dumps(data))
    supd.start()
    st = supd.wait_state("again", "running")
    assert st["pid"] != pid and st["restarts"] == 0
    supd.stop(signal.SIGTERM)


def test_reused_pid_is_not_adopted(supd: Supd) -> None:
    supd.write_unit("r", SLEEPER)
    supd.start()
    pid = supd.wait_state("r", "running")["pid"]
    supd.stop(signal.SIGKILL)
    # Make the record point at an unrelated live process (as if the pid had
    # been reused): same pid field, but a different process start time.
    stranger = subprocess.Popen(["/bin/sleep", "100000"])
    try:
        path = supd.state / "state" / "r.json"
        data = json.loads(path.read_text())
        data["unit"]["pid"] = stranger.pid
        path.write_text(json.dumps(data))
        supd.start()
        st = supd.wait_state("r", "running")
        assert st["pid"] not in (stranger.pid,)
        assert stranger.poll() is None, "supd must not touch a process it did not start"
        assert not [e for e in supd.events("r") if e["reason"] == "adopted"]
    finally:
        stranger.kill()
        stranger.wait()
    # the original is not adopted either: its scope is cleared (it may be gone
    # and reaped by PID 1 already, so no "still there" check before this)
    wait_for(lambda: gone(pid), what=f"pid {pid} gone")


def test_corrupt_and_future_state_files_are_reported_not_fatal(supd: Supd) -> None:
    supd.write_unit("c", SLEEPER)
    supd.write_unit("f", SLEEPER)
    state = supd.state / "state"
    state.mkdir(parents=True)
    (state / "c.json").write_text('{"version": 1, "unit": {"name": "c", "sta')
    (state / "f.json").write_text(json.dumps({"version": 99, "unit": {}}))
    supd.start()
    supd.wait_state("c", "running")
    supd.wait_state("f", "running")
    log = supd.daemon_log()
    assert "state_file_ignored" in log
    assert (state / "c.json.corrupt").exists()
    assert "newer" in log


def test_live_socket_refused_stale_socket_taken_over(supd: Supd) -> None:
    supd.start()
    second = subprocess.run(
        [*_supd_cmd(supd)],
        capture_output=True,
        text=True,
        timeout=30,
        env=supd.env(),
    )
    assert second.returncode != 0
    assert "another supd" in second.stderr and "Traceback" not in second.stderr
    assert supd.ctl("list").returncode == 0  # the first one is untouched
    supd.stop(signal.SIGKILL)  # leaves a stale socket file behind
    assert supd.socket.exists()
    supd.start()
    assert supd.ctl("list").returncode == 0
    time.sleep(0.1)


def _supd_cmd(supd: Supd) -> list[str]:
    import sys

    return [
        sys.executable,
        "-m",
        "supervisor",
        "--units",
        str(supd.units),
        "--state-dir",
        str(supd.state),
        "--runtime-dir",
        str(supd.runtime),
        "--cgroup-driver",
        "cgroupfs",
        "--cgroup-root",
        supd.cgroup_root,
    ]


def test_unit_made_invalid_while_supd_was_down_is_stopped(supd: Supd) -> None:
    supd.write_unit("v", SLEEPER)
    supd.start()
    pid = supd.wait_state("v", "running")["pid"]
    supd.stop(signal.SIGKILL)
    supd.write_unit("v", SLEEPER + "bogus_key = 1\n")
    supd.start()
    st = supd.wait_state("v", "error")
    assert "bogus_key" in st["error"]
    wait_for(lambda: gone(pid), what="the old process ended: nothing runs unsupervised")


# --- issue 10: units come back ------------------------------------------------


def _record(supd: Supd, unit: str) -> dict[str, object]:
    return json.loads((supd.state / "state" / f"{unit}.json").read_text())["unit"]


def test_unit_added_while_running_starts_again_after_a_stopping_shutdown(supd: Supd) -> None:
    # issue 10: a file dropped in while supd runs, SIGTERM with live_restore =
    # false, start again -> it stayed `exited` ("ended while supd was not running")
    supd.start()
    supd.write_unit("late", SLEEPER.replace('"always"', '"on-abnormal"'))
    pid = supd.wait_state("late", "running")["pid"]
    assert supd.stop(signal.SIGTERM) == 0
    assert gone(pid)
    record = _record(supd, "late")
    assert record["state"] == "inactive" and record["shutdown_stopped"] is True
    supd.start()
    st = supd.wait_state("late", "running", "exited", "failed")
    assert st["state"] == "running" and st["pid"] != pid
    assert st["restarts"] == 0
    assert not [e for e in supd.events("late") if e["event"] == "ended"]


def test_a_stopping_shutdown_brings_back_a_unit_a_user_started(supd: Supd) -> None:
    # not enabled, started by hand: running when supd stopped it, so it comes back
    supd.write_unit("manual", "[unit]\nenabled = false\n" + SLEEPER)
    supd.write_unit("idle", "[unit]\nenabled = false\n" + SLEEPER)
    supd.start()
    assert supd.ctl("start", "manual").returncode == 0
    supd.wait_state("manual", "running")
    assert supd.stop(signal.SIGTERM) == 0
    supd.start()
    supd.wait_state("manual", "running")
    assert supd.status("idle")["state"] == "inactive"


def test_live_restore_is_the_default_and_a_restart_keeps_pids(supd: Supd) -> None:
    supd.extra_args = []  # no flag: the built-in default
    supd.write_unit("a", SLEEPER)
    supd.write_unit("b", SLEEPER)
    supd.start()
    before = wait_for(lambda: (p := running_pids(supd)) and len(p) == 2 and p, what="2 running")
    assert json.loads(supd.ctl("info", "--json").stdout)["live_restore"] is True
    assert supd.stop(signal.SIGTERM) == 0
    for pid in before.values():
        assert pid_alive(pid), "SIGTERM to supd must leave the units running"
    supd.start()
    after = wait_for(lambda: (p := running_pids(supd)) and len(p) == 2 and p, what="2 re-adopted")
    assert after == before
    shut_down_for_real(supd)


def test_after_a_reboot_every_enabled_unit_starts_fresh(supd: Supd) -> None:
    """A power cut and a new boot, simulated: supd and every unit process gone,
    and the records carry the boot id of the boot before (the boot id is read
    from the kernel, so the records are what changes)."""
    crash = '[exec]\ncommand = ["/bin/sh", "-c", "exit 3"]\n[restart]\npolicy = "on-failure"\ndelay = "10ms"\nlimit_burst = 2\n'
    supd.write_unit("web", SLEEPER)
    supd.write_unit("held", SLEEPER)
    supd.write_unit("broken", crash)
    supd.write_unit("off", "[unit]\nenabled = false\n" + SLEEPER)
    supd.start()
    supd.wait_state("web", "running")
    supd.wait_state("broken", "failed")
    assert supd.ctl("stop", "held").returncode == 0
    supd.wait_state("held", "inactive")
    assert supd.ctl("start", "off").returncode == 0
    # web: restarts > 0 before the "reboot"
    first = supd.wait_state("web", "running")["pid"]
    os.kill(first, signal.SIGKILL)
    web_pid = wait_for(lambda: (p := running_pids(supd).get("web")) not in (None, first) and p, what="web restarted")
    off_pid = supd.wait_state("off", "running")["pid"]
    assert supd.status("web")["restarts"] == 1
    wait_for(lambda: _record(supd, "web")["pid"] == web_pid, what="web's record written")
    supd.stop(signal.SIGKILL)
    for pid in (web_pid, off_pid):  # the power cut
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: gone(pid), what=f"pid {pid} gone")
    for path in (supd.state / "state").glob("*.json"):
        data = json.loads(path.read_text())
        assert data["unit"]["boot_id"] == procfs.boot_id()
        data["unit"]["boot_id"] = "00000000-0000-4000-8000-000000000000"
        path.write_text(json.dumps(data))
    supd.start()
    for name in ("web", "held", "broken"):
        supd.wait_state(name, "running", "restarting", "failed")
    web = supd.wait_state("web", "running")
    assert web["restarts"] == 0
    assert web["last_exit"] is not None  # history kept
    assert supd.wait_state("held", "running")["restarts"] == 0  # a user's stop is forgotten at boot
    assert supd.status("off")["state"] == "inactive"  # not enabled: not started at boot
    assert not [e for e in supd.events() if e["event"] == "ended" or e["reason"] == "adopted"]
    # `failed` is forgotten at boot: this supd (its event ring is its own) started it again
    assert [e for e in supd.events("broken") if e["event"] == "starting"]


def test_a_process_started_after_the_last_record_is_ended_not_left_unsupervised(supd: Supd) -> None:
    """kill -9 of supd between a (re)start's placement in the scope and the
    save of its record (found by bench/soak.py): the record still describes
    the unit before that start. The new supd must end what runs in the unit's
    scope and start the unit, not refuse the scope as a stranger's."""
    supd.write_unit("web", SLEEPER)
    supd.start()
    pid = supd.wait_state("web", "running")["pid"]
    wait_for(lambda: _record(supd, "web")["pid"] == pid, what="web's record written")
    supd.stop(signal.SIGKILL)
    path = supd.state / "state" / "web.json"
    data = json.loads(path.read_text())
    # what the record said a moment before: starting, no process, no scope yet
    data["unit"].update(state="starting", pid=None, pid_start_time=None, cgroup=None)
    path.write_text(json.dumps(data))
    supd.start()
    st = supd.wait_state("web", "running", "failed")
    assert st["state"] == "running", st
    assert st["pid"] != pid
    wait_for(lambda: gone(pid), what="the unsupervised process ended")


def _memory_limit(supd: Supd, unit: str) -> int:
    for d in supd.scope_dirs(unit):
        for name in ("memory.max", "memory.limit_in_bytes"):
            if (d / name).exists():
                return int((d / name).read_text())
    raise AssertionError(f"no memory limit file in {supd.scope_dirs(unit)}")


def test_unit_file_edited_while_supd_was_away_is_taken_after_adoption(supd: Supd) -> None:
    supd.extra_args = ["--live-restore"]
    base = '[exec]\ncommand = ["/bin/sleep", "{secs}"]\n[resources]\nmemory_max = "{mem}"\n'
    supd.write_unit("live", base.format(secs=100000, mem="64M"))
    supd.write_unit("again", base.format(secs=100000, mem="64M"))
    supd.start()
    live = supd.wait_state("live", "running")["pid"]
    again = supd.wait_state("again", "running")["pid"]
    assert supd.stop(signal.SIGTERM) == 0
    supd.write_unit("live", base.format(secs=100000, mem="96M"))  # resources only: applied live
    supd.write_unit("again", base.format(secs=200000, mem="64M"))  # the command: a restart
    supd.start()
    assert supd.wait_state("live", "running")["pid"] == live
    wait_for(lambda: _memory_limit(supd, "live") == 96 << 20, what="live's new memory limit")
    assert [e for e in supd.events("live") if e["event"] == "updated"]
    st = wait_for(
        lambda: (s := supd.status("again"))["state"] == "running" and s["pid"] != again and s,
        what="again restarted on its new definition",
    )
    assert Path(f"/proc/{st['pid']}/cmdline").read_bytes().split(b"\0")[1] == b"200000"
    wait_for(lambda: gone(again), what=f"the old process of again (pid {again}) ended")
    shut_down_for_real(supd)


def test_an_upgrade_from_supd_0_1_keeps_the_units_running(supd: Supd) -> None:
    """supd 0.1 recorded a hash of its own model's repr, which any upgrade
    changes: read as an edit of every unit file, it restarted every adopted
    unit. A record like that now keeps its process."""
    supd.extra_args = ["--live-restore"]
    supd.write_unit("kept", SLEEPER)
    supd.start()
    pid = supd.wait_state("kept", "running")["pid"]
    assert supd.stop(signal.SIGTERM) == 0
    path = supd.state / "state" / "kept.json"
    record = json.loads(path.read_text())
    assert record["unit"]["definition"].startswith("v2:")
    record["unit"]["definition"] = "3f1c0a9d5e7b2c48"  # as supd 0.1 wrote it
    path.write_text(json.dumps(record))
    supd.start()
    st = supd.wait_state("kept", "running")
    assert (st["pid"], st["restarts"]) == (pid, 0)
    time.sleep(1)  # no restart follows the adoption
    assert supd.status("kept")["pid"] == pid
    assert "unit_definition_not_comparable" in supd.daemon_log()
    shut_down_for_real(supd)
