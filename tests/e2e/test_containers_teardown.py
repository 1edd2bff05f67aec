"""Nothing of a container is left behind: after `supctl stop`, after a
`kill -9` of its pid 1 (the restart policy then applies), and after supd
exits. The overlay lives in the container's own mount namespace, so it is
looked for in every mount namespace on the host, not just ours.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, pid_alive, wait_for
from tests.e2e.test_containers import container_unit, sh, start_unit
from tests.helpers.busybox import make_busybox_rootfs


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def mounts_anywhere(needle: Path) -> list[str]:
    """Mount lines naming `needle` (as mount point or in overlay options) in
    any mount namespace a live process on the host is in."""
    found: list[str] = []
    seen: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{entry}/mountinfo") as f:
                found += [f"{ns}: {line.rstrip()}" for line in f if str(needle) in line]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def host_mounts(needle: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.rstrip() for line in f if str(needle) in line]


def netns_pin(supd: Supd, unit: str) -> str:
    """The one host mount a running container on a bridge has: its network
    namespace pinned under runtime_dir (until the CNI DEL after it ends)."""
    return f"{supd.runtime}/netns/{unit} "


def container_overlay(pid: int) -> str:
    """The overlay line of the container's root, seen from the host."""
    with open(f"/proc/{pid}/mountinfo") as f:
        roots = [line for line in f if line.split()[4] == "/"]
    assert roots and " - overlay " in roots[-1], roots
    return roots[-1]


def test_nothing_left_after_stop(supd: Supd, busybox_layer: Path) -> None:
    st = start_unit(supd, "td", container_unit([busybox_layer], writable="ephemeral"))
    pid = int(st["pid"])  # type: ignore[arg-type]
    upper = supd.state / "units" / "td" / "upper"
    assert f"upperdir={upper}" in container_overlay(pid)
    sh(supd, "td", "echo x > /root/scratch")
    assert (upper / "root" / "scratch").exists()
    # the host never holds the overlay, only the container's namespace does
    assert [m for m in host_mounts(supd.root) if netns_pin(supd, "td") not in m] == []
    assert [m for m in host_mounts(supd.root) if netns_pin(supd, "td") in m]
    r = supd.ctl("stop", "td")
    assert r.returncode == 0, r.stderr
    supd.wait_state("td", "inactive")
    assert not pid_alive(pid)
    assert mounts_anywhere(supd.root) == []
    assert not (supd.runtime / "units" / "td").exists()
    assert not (supd.state / "units" / "td").exists()  # the ephemeral upper is gone


def test_kill_9_of_pid1_cleans_up_and_restarts(supd: Supd, busybox_layer: Path) -> None:
    text = container_unit([busybox_layer], writable="ephemeral", restart="on-failure", extra_rootfs="init = true\n")
    st = start_unit(supd, "k9", text)
    pid = int(st["pid"])  # type: ignore[arg-type]
    sh(supd, "k9", "echo x > /root/before-kill")
    inner = [int(p) for p in sh(supd, "k9", "ls /proc | grep '^[0-9]'").split()]
    assert 1 in inner and 2 in inner  # tini and the command
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="pid 1 gone")
    wait_for(lambda: supd.status("k9")["pid"] not in (None, pid), timeout=20, what="k9 restarted")
    st = supd.wait_state("k9", "running")
    assert st["restarts"] == 1
    assert st["last_exit"]["signal"] == "SIGKILL", st["last_exit"]
    assert [e["reason"] for e in supd.events("k9") if e["event"] == "restarting"] == ["signal SIGKILL"]
    # the first container's overlay died with it; only the new one's remains,
    # in its own namespace; the fresh ephemeral upper lost the file
    new_pid = int(st["pid"])
    left = [m for m in mounts_anywhere(supd.root) if netns_pin(supd, "k9") not in m]
    assert left and all(line.startswith(os.readlink(f"/proc/{new_pid}/ns/mnt")) for line in left), left
    assert sh(supd, "k9", "test -e /root/before-kill && echo kept || echo gone").strip() == "gone"
    assert len([m for m in host_mounts(supd.root) if netns_pin(supd, "k9") in m]) == 1  # the new one's only
    assert [m for m in host_mounts(supd.root) if netns_pin(supd, "k9") not in m] == []


def test_nothing_left_after_supd_exits(supd: Supd, busybox_layer: Path) -> None:
    pids = {}
    for name, writable in (("eph", "ephemeral"), ("per", "persistent"), ("ro", "readonly")):
        pids[name] = int(start_unit(supd, name, container_unit([busybox_layer], writable=writable))["pid"])  # type: ignore[arg-type]
    sh(supd, "per", "echo mine > /root/data")
    assert supd.stop(signal.SIGTERM) == 0
    for name, pid in pids.items():
        assert not pid_alive(pid), name
    assert mounts_anywhere(supd.root) == []
    assert not any((supd.runtime / "units").glob("*")), list((supd.runtime / "units").glob("*"))
    assert not (supd.state / "units" / "eph").exists()
    assert not (supd.state / "units" / "ro").exists()
    # a persistent upper is user data: kept, with what the unit wrote
    assert (supd.state / "units" / "per" / "upper" / "root" / "data").read_text() == "mine\n"
