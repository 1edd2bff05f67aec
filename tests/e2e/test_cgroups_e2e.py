"""Every unit in its own scope, with its limits enforced by the kernel and its
figures in `supctl status` — through a real supd and the real supctl."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.conftest import TIME_SCALE, Supd, wait_for

PY = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"


def cpu_ns(supd: Supd, unit: str) -> int:
    return int(supd.status(unit)["resources"]["cpu_usage_ns"])


def scope_dirs(supd: Supd, unit: str) -> list[Path]:
    return supd.scope_dirs(unit)


def memory_limit_file(supd: Supd, unit: str) -> Path:
    """memory.max of the unit's v2 scope, or memory.limit_in_bytes of its v1 memory scope."""
    for scope in scope_dirs(supd, unit):
        for name in ("memory.max", "memory.limit_in_bytes"):
            if (scope / name).exists():
                return scope / name
    raise AssertionError(f"no memory limit file in {scope_dirs(supd, unit)}")


def test_memory_max_oom_kill_is_recorded_and_restart_policy_applies(supd: Supd) -> None:
    supd.write_unit(
        "hog",
        f"""
[exec]
command = ["{PY}", "-c", "import time; b = bytearray(); [b.extend(b'x' * 1048576) for _ in range(200)]; time.sleep(100)"]
[resources]
memory_max = "32M"
[restart]
policy = "on-failure"
delay = "10s"
""",
    )
    supd.start()
    st = supd.wait_state("hog", "restarting", "failed", "exited", timeout=30)
    assert st["last_exit"]["reason"] == "oom-kill", st["last_exit"]
    assert st["state"] == "restarting"  # on-failure restarts after an OOM kill
    ev = [e for e in supd.events("hog") if e["event"] == "restarting"]
    assert ev and ev[0]["reason"] == "oom-kill"


def test_pids_max_stops_a_fork_bomb_and_supd_stays_responsive(supd: Supd) -> None:
    supd.write_unit(
        "bomb",
        """
[exec]
command = ["/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do (sleep 1000 &) 2>/dev/null; i=$((i+1)); done; sleep 1000"]
[resources]
pids_max = 16
[stop]
timeout = "2s"
""",
    )
    supd.start()
    supd.wait_state("bomb", "running")
    time.sleep(2)
    st = supd.status("bomb")
    assert st["resources"]["pids_current"] <= 16
    assert st["tasks_max"] == 16
    t0 = time.monotonic()
    assert supd.ctl("list").returncode == 0
    assert time.monotonic() - t0 < 5 * TIME_SCALE
    assert supd.ctl("stop", "bomb").returncode == 0
    supd.wait_state("bomb", "inactive")
    assert not scope_dirs(supd, "bomb")


def test_cpu_quota_holds_a_busy_loop(supd: Supd) -> None:
    supd.write_unit(
        "spin",
        """
[exec]
command = ["/bin/sh", "-c", "while :; do :; done"]
[resources]
cpu_quota = "20%"
""",
    )
    supd.start()
    supd.wait_state("spin", "running")
    time.sleep(0.5)
    a, t0 = cpu_ns(supd, "spin"), time.monotonic()
    time.sleep(3)
    b, t1 = cpu_ns(supd, "spin"), time.monotonic()
    share = (b - a) / 1e9 / (t1 - t0)
    assert 0.10 <= share <= 0.25, f"busy loop used {share:.1%} of a core under a 20% quota"


def test_freeze_stops_cpu_and_thaw_resumes(supd: Supd) -> None:
    supd.write_unit("busy", '[exec]\ncommand = ["/bin/sh", "-c", "while :; do :; done"]\n[resources]\ncpu_quota = "30%"\n')
    supd.start()
    supd.wait_state("busy", "running")
    assert supd.ctl("freeze", "busy").returncode == 0
    st = supd.status("busy")
    assert st["state"] == "frozen" and st["frozen"] is True
    a = cpu_ns(supd, "busy")
    time.sleep(1.5)
    assert cpu_ns(supd, "busy") - a < 5_000_000  # < 5 ms in 1.5 s: really frozen
    assert supd.ctl("status", "busy").returncode == 0  # frozen counts as active
    assert supd.ctl("thaw", "busy").returncode == 0
    assert supd.status("busy")["state"] == "running"
    b = cpu_ns(supd, "busy")
    time.sleep(1.5)
    assert cpu_ns(supd, "busy") - b > 50_000_000
    # thawing a running unit is a conflict, not a crash
    r = supd.ctl("thaw", "busy")
    assert r.returncode != 0 and "not frozen" in r.stderr
    # a frozen unit can still be stopped
    supd.ctl("freeze", "busy")
    assert supd.ctl("stop", "busy").returncode == 0
    supd.wait_state("busy", "inactive")


def test_resources_only_change_is_applied_live(supd: Supd) -> None:
    base = '[exec]\ncommand = ["/bin/sleep", "100000"]\n[resources]\nmemory_max = "{mem}"\npids_max = {pids}\n'
    supd.write_unit("live", base.format(mem="64M", pids=32))
    supd.start()
    pid = supd.wait_state("live", "running")["pid"]
    mem_file = memory_limit_file(supd, "live")
    assert int(mem_file.read_text()) == 64 * 1024 * 1024
    supd.write_unit("live", base.format(mem="128M", pids=64))
    wait_for(lambda: int(mem_file.read_text()) == 128 * 1024 * 1024, what="new memory limit in the kernel")
    st = supd.status("live")
    assert st["pid"] == pid and st["state"] == "running"
    assert st["tasks_max"] == 64
    updated = [e for e in supd.events("live") if e["event"] == "updated"]
    assert updated and set(updated[-1]["changed"]) == {"memory_max", "pids_max"}


def test_no_scope_left_after_stop_crash_or_supd_exit(supd: Supd) -> None:
    supd.write_unit("a", '[exec]\ncommand = ["/bin/sleep", "100000"]\n')
    supd.write_unit("b", '[exec]\ncommand = ["/bin/sleep", "100000"]\n[unit]\nslice = "batch"\n')
    supd.write_unit("c", '[exec]\ncommand = ["/bin/sh", "-c", "sleep 0.5; kill -SEGV $$"]\n')
    supd.start()
    supd.wait_state("a", "running")
    supd.wait_state("b", "running")
    assert supd.status("b")["cgroup"].endswith("supd.slice/supd-batch.slice/supd-b.scope")
    supd.wait_state("c", "exited")  # crashed with SIGSEGV, policy "no"
    assert supd.status("c")["last_exit"]["signal"] == "SIGSEGV"
    assert not scope_dirs(supd, "c")
    supd.ctl("stop", "a")
    supd.wait_state("a", "inactive")
    assert not scope_dirs(supd, "a")
    assert scope_dirs(supd, "b")
    supd.stop()
    assert not scope_dirs(supd, "b")


def test_status_shows_driver_tree_and_figures(supd: Supd) -> None:
    supd.write_unit("t", '[exec]\ncommand = ["/bin/sh", "-c", "sleep 100000 & sleep 100000"]\n[resources]\nmemory_max = "64M"\npids_max = 10\n')
    supd.start()
    supd.wait_state("t", "running")
    wait_for(lambda: len(supd.status("t")["processes"]) == 3, what="3 processes in the scope")
    human = supd.ctl("status", "t").stdout
    for needle in ("Tasks:", "(limit: 10)", "Memory:", "max: 64.0M", "CPU:", "CGroup: /supd.slice/supd-t.scope", f"Driver: {supd.driver}", "sleep 100000"):
        assert needle in human, (needle, human)
    info = json.loads(supd.ctl("info", "--json").stdout)
    assert info["driver"] == supd.driver
    assert info["cgroup"].startswith(supd.driver)  # and says which layout
    tree = supd.ctl("tree").stdout
    assert "supd.slice" in tree and "supd-t.scope" in tree
    tree_json = json.loads(supd.ctl("tree", "--json").stdout)
    assert tree_json["name"] == "supd.slice"
    assert tree_json["tasks"] == 3
