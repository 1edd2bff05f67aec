"""Fault containment, end to end (issue 10): a real supd with failpoints armed
(SUPD_FAILPOINTS, supervisor/failpoints.py), live updates the kernel refuses,
someone else freezing supd.slice, slow stops, invalid reloads. After each
fault supd keeps answering and the other units keep their pids."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import CGROUP_ROOT, TIME_SCALE, Supd, pid_alive, wait_for
from tests.e2e.test_containers import busybox_layer, container_unit  # noqa: F401  (fixture)

SLEEPER = """
[exec]
command = ["/bin/sleep", "1000"]
[stop]
timeout = "5s"
"""

# Ignores SIGTERM: a stop has to escalate to SIGKILL.
STUBBORN = """
[exec]
command = ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
[stop]
timeout = "1s"
"""


def limited(memory_max: str = "64M", pids_max: int = 64) -> str:
    return SLEEPER + f'[resources]\nmemory_max = "{memory_max}"\npids_max = {pids_max}\n'


def alive_and_answering(supd: Supd, steady_pid: int) -> None:
    assert supd.proc is not None and supd.proc.poll() is None, "supd exited"
    assert supd.ctl("list").returncode == 0
    st = supd.status("steady")
    assert st["state"] == "running" and st["pid"] == steady_pid
    assert pid_alive(steady_pid)


def test_every_failpoint_is_contained(supd: Supd, busybox_layer: Path) -> None:  # noqa: F811
    points = {
        "driver.create@v-create": "raise",
        "driver.create@v-delay": "delay(2s)",
        "rootfs.mount@v-mount": "panic",
        "spawn@v-spawn": "1*raise",
        "driver.update@v-update": "raise",
        "driver.kill@v-kill": "raise",
        "driver.remove@v-remove": "panic",
        "state.save@v-save": "raise",
        "log.rotate": "raise",
        "inotify.setup": "1*raise",
    }
    env_points = ";".join(f"{k}={v}" for k, v in points.items())
    supd.write_unit("steady", SLEEPER)
    for name in ("v-create", "v-delay", "v-spawn", "v-update", "v-remove", "v-save"):
        supd.write_unit(name, SLEEPER)
    supd.write_unit("v-kill", STUBBORN)
    supd.write_unit("v-mount", container_unit([busybox_layer]))
    old_env = supd.env
    supd.env = lambda: dict(old_env(), SUPD_FAILPOINTS=env_points, SUPD_HOUSEKEEPING_INTERVAL="1")  # type: ignore[method-assign]
    supd.start()
    steady = supd.wait_state("steady", "running")["pid"]

    # driver.create, rootfs.mount (a panic: an unexpected bug), spawn: the unit is failed, with the message
    for name, needle in (("v-create", "failpoint driver.create"), ("v-mount", "failpoint rootfs.mount"), ("v-spawn", "failpoint spawn")):
        st = supd.wait_state(name, "failed")
        assert needle in (st["error"] or ""), st
        assert any(e["event"] == "failed" and needle in str(e.get("error")) for e in supd.events(name))
    # a delayed create only delays that unit
    supd.wait_state("v-delay", "running")
    # spawn fired once: a user start now works
    assert supd.ctl("start", "v-spawn").returncode == 0
    supd.wait_state("v-spawn", "running")
    alive_and_answering(supd, steady)

    # driver.update: a live update refused keeps the unit on its old limits
    pid = supd.wait_state("v-update", "running")["pid"]
    supd.write_unit("v-update", limited())
    r = supd.ctl("reload")
    assert r.returncode == 1 and "refused: v-update" in r.stdout, (r.returncode, r.stdout, r.stderr)
    st = supd.status("v-update")
    assert st["state"] == "running" and st["pid"] == pid and "failpoint driver.update" in st["error"]
    assert any(e["event"] == "update-refused" for e in supd.events("v-update"))

    # driver.kill: the stop falls back to killing the process itself
    supd.wait_state("v-kill", "running")
    assert supd.ctl("stop", "v-kill").returncode == 0
    supd.wait_state("v-kill", "inactive")

    # driver.remove panics while the unit stops: contained, scope still removed
    supd.wait_state("v-remove", "running")
    supd.ctl("stop", "v-remove")
    st = supd.wait_state("v-remove", "inactive", "failed")
    assert "failpoint driver.remove" in (st["error"] or "")
    assert st["cgroup"] is None

    # state.save and log.rotate fail quietly (logged); inotify.setup failed once: the watch came back
    supd.wait_state("v-save", "running")
    supd.write_unit("late", SLEEPER)
    supd.wait_state("late", "running", timeout=20)
    wait_for(lambda: "failpoint log.rotate" in supd.daemon_log(), what="a rotation attempt")
    log = supd.daemon_log()
    assert "failpoint state.save" in log and "failpoint inotify.setup" in log
    alive_and_answering(supd, steady)


def test_malformed_failpoints_stop_supd_with_a_clear_message(supd: Supd) -> None:
    old_env = supd.env
    supd.env = lambda: dict(old_env(), SUPD_FAILPOINTS="driver.create=explode")  # type: ignore[method-assign]
    supd.start(wait=False)
    assert supd.proc is not None
    assert supd.proc.wait(timeout=30) == 2
    assert "SUPD_FAILPOINTS: 'driver.create=explode': expected NAME[@UNIT]=" in supd.daemon_log()


def test_refused_live_update_keeps_the_old_limits(supd: Supd) -> None:
    supd.write_unit("steady", SLEEPER)
    supd.write_unit("lim", limited("64M", 64))
    supd.start()
    steady = supd.wait_state("steady", "running")["pid"]
    pid = supd.wait_state("lim", "running")["pid"]
    # pids_max beyond what the kernel takes (EINVAL/ERANGE): supd used to exit here
    supd.write_unit("lim", limited("64M", 5_000_000))
    r = supd.ctl("reload")
    assert r.returncode == 1 and "refused: lim" in r.stdout and "pids" in r.stdout, (r.stdout, r.stderr)
    st = supd.status("lim")
    assert st["state"] == "running" and st["pid"] == pid
    assert "live update refused, old limits kept" in st["error"] and st["limits"]["pids_max"] == 64
    assert st["tasks_max"] == 64
    assert any(e["event"] == "update-refused" for e in supd.events("lim"))
    # a good edit afterwards is applied and clears the message
    supd.write_unit("lim", limited("64M", 32))
    r = supd.ctl("reload")
    assert r.returncode == 0, r.stdout
    st = supd.status("lim")
    assert st["pid"] == pid and st["error"] is None and st["tasks_max"] == 32
    alive_and_answering(supd, steady)


def test_memory_max_below_usage_is_refused_or_applied_never_fatal(supd: Supd) -> None:
    # A unit that holds ~20 MiB; lowering memory_max to 4M below that: cgroup v1
    # answers EBUSY (refused: old limit kept), v2 reclaims/OOM-kills (applied).
    hog = """
[exec]
command = ["/bin/sh", "-c", "x=$(head -c 20000000 /dev/zero | tr '\\\\0' a); sleep 1000"]
[resources]
memory_max = "256M"
[stop]
timeout = "2s"
"""
    supd.write_unit("steady", SLEEPER)
    supd.write_unit("hog", hog)
    supd.start()
    steady = supd.wait_state("steady", "running")["pid"]
    supd.wait_state("hog", "running")
    wait_for(lambda: (supd.status("hog")["resources"]["memory_current"] or 0) > 16 * 2**20, what="hog's memory")
    supd.write_unit("hog", hog.replace("256M", "4M"))
    r = supd.ctl("reload")
    assert r.returncode in (0, 1), r.stderr
    if r.returncode == 1:
        st = supd.status("hog")
        assert st["state"] == "running" and st["memory_max"] == 256 * 2**20 and "refused" in st["error"]
    alive_and_answering(supd, steady)


def _freezer_dir(supd: Supd) -> Path | None:
    for candidate in (CGROUP_ROOT / "freezer" / supd.cgroup_root.strip("/") / "supd.slice",
                      CGROUP_ROOT / supd.cgroup_root.strip("/") / "supd.slice"):  # fmt: skip
        if (candidate / "freezer.state").exists() or (candidate / "cgroup.freeze").exists():
            return candidate
    return None


def _is_v1_freezer(path: Path) -> bool:
    return (path / "freezer.state").exists()


def _set_frozen(path: Path, frozen: bool) -> None:
    if (path / "freezer.state").exists():
        (path / "freezer.state").write_text("FROZEN" if frozen else "THAWED")
    else:
        (path / "cgroup.freeze").write_text("1" if frozen else "0")


def test_someone_else_freezing_supd_slice(supd: Supd) -> None:
    supd.write_unit("steady", SLEEPER)
    supd.write_unit("s", STUBBORN)
    supd.start()
    supd.wait_state("steady", "running")
    pid = supd.wait_state("s", "running")["pid"]
    slice_dir = _freezer_dir(supd)
    if slice_dir is None:
        pytest.skip("no freezer for supd.slice on this host")
    _set_frozen(slice_dir, True)
    try:
        st = wait_for(lambda: (s := supd.status("s"))["frozen_by_parent"] and s, what="frozen by parent")
        assert st["frozen"] and st["freeze_reason"] == "frozen by parent"
        assert "frozen by parent" in supd.ctl("status", "s").stdout
        r = supd.ctl("stop", "s", timeout=60)
        assert supd.proc is not None and supd.proc.poll() is None
        if _is_v1_freezer(slice_dir):
            # v1: a frozen task cannot die, so the stop cannot finish: it says so and retries
            wait_for(lambda: any(e["event"] == "stop-stalled" and "frozen by parent" in e["reason"] for e in supd.events("s")),
                     timeout=40, what="stop-stalled event")  # fmt: skip
            assert supd.state_of("s") == "stopping", r.stdout
        else:
            # v2: SIGKILL goes through the freezer (cgroup.kill): the stop ends
            supd.wait_state("s", "inactive", timeout=40)
    finally:
        _set_frozen(slice_dir, False)
    # thawed: the retried stop finishes
    supd.wait_state("s", "inactive", timeout=60)
    assert not pid_alive(pid)
    assert supd.ctl("list").returncode == 0


def test_a_slow_stop_does_not_delay_other_files(supd: Supd) -> None:
    slow = STUBBORN.replace('timeout = "1s"', f'timeout = "{10 * TIME_SCALE:g}s"')
    supd.write_unit("slow", slow)
    supd.start()
    supd.wait_state("slow", "running")
    (supd.units / "slow.toml").unlink()
    time.sleep(0.5)  # the removal is under way
    t0 = time.monotonic()
    supd.write_unit("quick", SLEEPER)
    supd.wait_state("quick", "running", timeout=8)
    assert time.monotonic() - t0 < 6.0 * TIME_SCALE  # well inside the slow unit's stop timeout
    assert supd.state_of("slow") == "stopping"
    r = supd.ctl("reload")  # a reload answers at once too
    assert r.returncode == 0
    wait_for(lambda: supd.ctl("status", "slow").returncode == 4, timeout=30, what="slow removed")


def test_reload_to_an_invalid_file_ends_in_error(supd: Supd) -> None:
    supd.write_unit("u", SLEEPER)
    supd.start()
    pid = supd.wait_state("u", "running")["pid"]
    supd.write_unit("u", SLEEPER.replace("[exec]", "[exec]\ncomand = 1"))
    r = supd.ctl("reload")
    assert r.returncode == 1 and "error: u" in r.stdout, (r.returncode, r.stdout, r.stderr)
    st = supd.wait_state("u", "error")
    assert "comand" in st["error"] and st["pid"] is None
    wait_for(lambda: not pid_alive(pid), what="old process gone")
    time.sleep(0.5)
    assert supd.state_of("u") == "error"  # and it stays there
    events = [e["event"] for e in supd.events("u")]
    assert events[-2:] == ["stopping", "error"], events
    supd.write_unit("u", SLEEPER)
    supd.ctl("reload")
    supd.wait_state("u", "running")
    r = supd.ctl("list", "--json")
    assert [u["state"] for u in json.loads(r.stdout)] == ["running"]


def test_a_start_cancelled_halfway_leaves_nothing(supd: Supd, busybox_layer: Path) -> None:  # noqa: F811
    # The container's process exists and its mount point is prepared when the
    # scope's creation stalls; supd shuts down (live-restore: it cancels
    # rather than stops) right then. Nothing may stay: process, scope, mount.
    supd.write_unit("c", container_unit([busybox_layer]))
    old_env = supd.env
    supd.env = lambda: dict(old_env(), SUPD_FAILPOINTS=f"driver.create@c=delay({10 * TIME_SCALE:g}s)")  # type: ignore[method-assign]
    supd.start("--live-restore")
    supd.wait_state("c", "starting")
    before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    assert supd.stop() == 0
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(supd.runtime) not in mounts and str(supd.state) not in mounts
    # the waiting process was aborted (the fixture checks the scopes)
    after = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    for pid in before & after:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert str(supd.root).encode() not in cmdline or b"pytest" in cmdline, cmdline
    assert not (supd.runtime / "units" / "c" / "rootfs").exists()


def test_freeze_and_stop_at_once_never_leave_a_frozen_or_stuck_unit(supd: Supd) -> None:
    import subprocess
    import sys

    supd.write_unit("f", SLEEPER)
    supd.start()
    for _ in range(4):
        supd.wait_state("f", "running")
        cmd = [sys.executable, "-m", "supervisor.cli.main"]
        both = [subprocess.Popen(cmd + [verb, "f"], env=supd.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for verb in ("freeze", "stop")]
        for p in both:
            p.communicate(timeout=30)
        st = supd.wait_state("f", "inactive", timeout=20)
        assert st["pid"] is None and not st["frozen"]
        assert supd.ctl("start", "f").returncode == 0
