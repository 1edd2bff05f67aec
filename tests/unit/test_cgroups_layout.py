"""Pure: layout detection from fake mountinfo text."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.cgroups.driver import CgroupError
from supervisor.cgroups.layout import LayoutKind, layout_from_mounts, parse_mountinfo

ROOT = Path("/sys/fs/cgroup")

HYBRID = """\
22 1 0:21 / / rw,relatime - overlay overlay rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

UNIFIED = """\
22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

LEGACY_COMOUNTED = """\
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 /docker/abc /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/net_cls,net_prio rw shared:12 - cgroup cgroup rw,net_cls,net_prio
"""


def test_hybrid_host_like_ci() -> None:
    layout = layout_from_mounts(parse_mountinfo(HYBRID), ROOT, frozenset({"hugetlb"}))
    assert layout.kind is LayoutKind.HYBRID
    assert {h.key for h in layout.v1} == {
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd",
    }
    assert layout.unified is not None and layout.unified.mount == ROOT / "unified"
    assert layout.v1_for("memory").mount == ROOT / "memory"  # type: ignore[union-attr]
    assert layout.describe() == "hybrid (v1 controllers + cgroup2)"


def test_hybrid_stray_controller_on_v2_side() -> None:
    layout = layout_from_mounts(parse_mountinfo(HYBRID), ROOT, frozenset({"hugetlb", "memory"}))
    # v1 is authoritative for memory; hugetlb has no v1 home, so it stays on v2.
    assert layout.hierarchy_for("memory").key == "memory"  # type: ignore[union-attr]
    assert layout.hierarchy_for("hugetlb").key == "unified"  # type: ignore[union-attr]
    assert layout.unified.controllers == frozenset({"hugetlb"})  # type: ignore[union-attr]
    assert layout.hierarchy_for("rdma") is None


def test_unified_host() -> None:
    layout = layout_from_mounts(parse_mountinfo(UNIFIED), ROOT, frozenset({"cpu", "memory", "pids"}))
    assert layout.kind is LayoutKind.UNIFIED
    assert layout.v1 == ()
    assert layout.hierarchy_for("memory").mount == ROOT  # type: ignore[union-attr]
    assert layout.describe() == "unified (cgroup2)"


def test_legacy_with_comounted_controllers_and_container_root() -> None:
    layout = layout_from_mounts(parse_mountinfo(LEGACY_COMOUNTED), ROOT)
    assert layout.kind is LayoutKind.LEGACY
    assert layout.unified is None
    cpu = layout.v1_for("cpuacct")
    assert cpu is not None and cpu.key == "cpu,cpuacct" and cpu.mount == ROOT / "cpu,cpuacct"
    assert layout.v1_for("memory").mount_root == "/docker/abc"  # type: ignore[union-attr]
    assert layout.v1_for("net_prio").key == "net_cls,net_prio"  # type: ignore[union-attr]


def test_later_mount_on_the_same_point_wins() -> None:
    text = HYBRID + "50 31 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert layout_from_mounts(parse_mountinfo(text), ROOT).kind is LayoutKind.UNIFIED


def test_root_is_injectable() -> None:
    text = "60 1 0:50 / /tmp/x/cg rw - cgroup2 cgroup2 rw\n"
    layout = layout_from_mounts(parse_mountinfo(text + HYBRID), Path("/tmp/x/cg"))
    assert layout.kind is LayoutKind.UNIFIED and layout.root == Path("/tmp/x/cg")


def test_mounts_elsewhere_are_ignored() -> None:
    text = HYBRID + "70 1 0:60 / /mnt/other rw - cgroup cgroup rw,memory\n"
    layout = layout_from_mounts(parse_mountinfo(text), ROOT)
    assert [h.mount for h in layout.v1 if "memory" in h.controllers] == [ROOT / "memory"]


def test_escaped_mount_point() -> None:
    (m,) = parse_mountinfo("1 0 0:1 / /a\\040b rw - tmpfs tmpfs rw\n")
    assert m.mount_point == Path("/a b")


def test_no_cgroups_at_all_is_an_error_naming_the_root() -> None:
    with pytest.raises(CgroupError, match="/sys/fs/cgroup"):
        layout_from_mounts(parse_mountinfo("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"), ROOT)


def test_garbage_line_is_an_error() -> None:
    with pytest.raises(CgroupError, match="line 1"):
        parse_mountinfo("not a mountinfo line\n")
