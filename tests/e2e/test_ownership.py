"""issue 10, "supd kills what is not its own": one supd per cgroup root, no
joining a scope that holds someone else's processes, stale-scope removal only
of what this supd's records name, and state records that point outside supd's
slices rejected. Real supd, real supctl, real cgroups."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import procfs
from tests.e2e.conftest import DRIVER, Supd, cgroup_hierarchies, pid_alive, wait_for
from tests.e2e.test_live_restore import SLEEPER


# These tests make cgroups (scopes holding strangers) under the test's own
# cgroup root, which only the cgroupfs driver has.
cgroupfs_only = pytest.mark.skipif(DRIVER != "cgroupfs", reason="needs the test's own cgroup root (cgroupfs driver)")


def _simple_hierarchy() -> Path:
    """One hierarchy a process can be put in without setup (v1 cpuset needs
    cpus/mems first): pids on v1 and hybrid hosts, the cgroup2 root on v2."""
    hierarchies = cgroup_hierarchies()
    return next((h for h in hierarchies if h.name == "pids"), hierarchies[0])


class Strangers:
    """Processes supd did not start, each in a cgroup the test made."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cgroups: list[Path] = []

    def start_in(self, cgroup: Path) -> subprocess.Popen[bytes]:
        cgroup.mkdir(parents=True, exist_ok=True)
        self.cgroups.append(cgroup)
        p = subprocess.Popen(["/bin/sleep", "100000"])
        self.procs.append(p)
        (cgroup / "cgroup.procs").write_text(str(p.pid))
        return p

    def end(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for cgroup in reversed(self.cgroups):
            wait_for(lambda cgroup=cgroup: not (cgroup / "cgroup.procs").read_text().strip(), what=f"{cgroup} empty")
            cgroup.rmdir()


@pytest.fixture
def strangers() -> Iterator[Strangers]:
    s = Strangers()
    try:
        yield s
    finally:
        s.end()


def test_second_supd_on_the_same_cgroup_root_is_refused_naming_the_owner(supd: Supd, tmp_path: Path) -> None:
    supd.write_unit("web", SLEEPER)
    supd.start()
    pid = supd.wait_state("web", "running")["pid"]
    assert supd.proc is not None
    second = Supd(root=tmp_path / "second", cgroup_root=supd.cgroup_root)
    second.write_unit("other", SLEEPER)
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(timeout=60) == 1
    second.proc = None
    log = second.daemon_log()
    assert f"is owned by another supd (pid {supd.proc.pid}, state_dir {supd.state}" in log, log
    assert "Traceback" not in log
    # the first one's units were not touched ("stale" SIGKILL within a second, before)
    assert supd.status("web")["pid"] == pid and pid_alive(pid)
    assert supd.status("web")["state"] == "running"


@cgroupfs_only
def test_a_scope_with_processes_supd_did_not_start_is_neither_joined_nor_removed(
    supd: Supd, strangers: Strangers
) -> None:
    slice_dir = _simple_hierarchy() / supd.cgroup_root.lstrip("/") / "supd.slice"
    in_web = strangers.start_in(slice_dir / "supd-web.scope")
    in_ghost = strangers.start_in(slice_dir / "supd-ghost.scope")  # no unit, no record: not ours
    supd.write_unit("web", SLEEPER)
    supd.write_unit("fine", SLEEPER)
    supd.start()
    st = supd.wait_state("web", "failed")
    assert "the scope already holds processes supd did not start" in st["error"]
    assert f"pids [{in_web.pid}]" in st["error"]
    supd.wait_state("fine", "running")
    assert in_web.poll() is None and in_ghost.poll() is None
    assert (slice_dir / "supd-ghost.scope").is_dir()
    assert "stale_scope_not_ours" in supd.daemon_log() or "cgroup_stale_not_ours" in supd.daemon_log()
    supd.stop(signal.SIGTERM)
    assert in_web.poll() is None and in_ghost.poll() is None  # nor killed at shutdown


@cgroupfs_only
def test_a_record_pointing_outside_supds_slices_is_rejected_never_acted_on(
    supd: Supd, strangers: Strangers
) -> None:
    hierarchy = _simple_hierarchy()
    victim_cgroup = hierarchy / supd.cgroup_root.lstrip("/") / "elsewhere"
    victim = strangers.start_in(victim_cgroup)
    start_time = int(Path(f"/proc/{victim.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    supd.write_unit("evil", SLEEPER)
    state = supd.state / "state"
    state.mkdir(parents=True)
    record = {
        "name": "evil",
        "state": "running",
        "since": 1.0,
        "pid": victim.pid,
        "pid_start_time": start_time,
        "cgroup": {
            "unit": "evil",
            "scope": "supd-evil.scope",
            "slice": "supd.slice",
            "paths": {hierarchy.name if hierarchy.name != "cgroup" else "unified": str(victim_cgroup)},
            "driver": "cgroupfs",
        },
        "boot_id": procfs.boot_id(),
    }
    (state / "evil.json").write_text(json.dumps({"version": 1, "unit": record}))
    supd.start()
    st = supd.wait_state("evil", "failed")
    assert "outside supd's slice" in st["error"] and "evil.json.corrupt" in st["error"]
    assert (state / "evil.json.corrupt").exists()
    assert "state_record_rejected" in supd.daemon_log()
    assert victim.poll() is None and victim_cgroup.is_dir()
    assert str(victim.pid) in (victim_cgroup / "cgroup.procs").read_text().split()
    # a user start runs the unit in its own scope, still leaving the stranger be
    assert supd.ctl("start", "evil").returncode == 0
    assert supd.wait_state("evil", "running")["pid"] != victim.pid
    supd.stop(signal.SIGTERM)
    assert victim.poll() is None
