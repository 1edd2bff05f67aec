"""The sandbox itself: a real systemd as PID 1, isolated from the host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.systemd.sandbox import Sandbox, host_is_systemd_booted

pytestmark = [pytest.mark.systemd, pytest.mark.root]


def test_systemd_runs_as_pid_1_of_the_sandbox(systemd_sandbox: Sandbox) -> None:
    res = systemd_sandbox.exec(["systemctl", "is-system-running"])
    assert res.stdout.strip() == "running", res.stdout + res.stderr
    comm = Path(f"/proc/{systemd_sandbox.leader_pid}/comm").read_text().strip()
    assert comm == "systemd"
    # the marker `auto` driver selection looks for, inside the sandbox only
    assert Path(f"/proc/{systemd_sandbox.leader_pid}/root/run/systemd/system").is_dir()
    if not host_is_systemd_booted():
        # the sandbox's /run stays its own: it must not make the host look systemd-booted
        assert not Path("/run/systemd/system").exists(), "the host must not look systemd-booted"


def test_sandbox_has_its_own_tmp_run_and_cgroup_subtree(systemd_sandbox: Sandbox) -> None:
    root = f"/proc/{systemd_sandbox.leader_pid}/root"
    for d in ("/tmp", "/run", "/var/tmp"):
        assert os.stat(root + d).st_dev != os.stat(d).st_dev, f"{d} is shared with the host"
    cgroup = Path(f"/proc/{systemd_sandbox.leader_pid}/cgroup").read_text()
    assert f"/{systemd_sandbox.name}/payload" in cgroup, cgroup
    assert systemd_sandbox.payload_dir.is_dir()


def test_pidns_helper_sees_the_sandbox_pids_and_cgroups(systemd_sandbox: Sandbox) -> None:
    res = systemd_sandbox.run_pidns(
        ["sh", "-c", "cat /proc/1/comm; cat /proc/self/cgroup; stat -fc %T /sys/fs/cgroup; test -S /proc/1/root/run/systemd/private && echo socket"]
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0] == "systemd"
    assert "0::/harness" in lines
    assert "cgroup2fs" in lines
    assert lines[-1] == "socket"
    # the helper's mounts were private: the host's /sys/fs/cgroup is untouched
    host_type = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True).stdout.strip()
    assert (host_type == "cgroup2fs") == Path("/sys/fs/cgroup/cgroup.controllers").exists()
