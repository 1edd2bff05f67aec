"""Which cgroup setup this host has: unified (v2), hybrid (v1 + a cgroup2 mount)
or legacy (v1 only), and where each hierarchy is mounted.

Detection reads /proc/self/mountinfo rather than statfs magic: it must tell a
cgroup2 mount at `<root>/unified` from a tmpfs, and name the controllers of every
v1 mount (co-mounts like "cpu,cpuacct"). Parsing is pure (`procfs.parse_mountinfo`,
`layout_from_mounts`) and tested on fake text; `detect` only adds the reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from supervisor import procfs
from supervisor.cgroups.driver import UNIFIED, CgroupError
from supervisor.procfs import MOUNTINFO, Mount

CGROUP_CONTROLLERS = "cgroup.controllers"
DEFAULT_ROOT = Path("/sys/fs/cgroup")

FSTYPE_CGROUP1 = "cgroup"
FSTYPE_CGROUP2 = "cgroup2"

# v1 controller names as they appear in a cgroup mount's super options.
V1_CONTROLLERS = frozenset(
    {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    }
)
NAMED_PREFIX = "name="


class LayoutKind(str, enum.Enum):
    UNIFIED = "unified"
    HYBRID = "hybrid"
    LEGACY = "legacy"


@dataclass(frozen=True)
class Hierarchy:
    """A mounted cgroup hierarchy: key "memory", "cpu,cpuacct", "name=systemd", "unified"."""

    key: str
    controllers: frozenset[str]
    mount: Path
    mount_root: str = "/"  # the cgroup path shown at `mount` (not "/" inside some containers)


@dataclass(frozen=True)
class Layout:
    kind: LayoutKind
    root: Path
    v1: tuple[Hierarchy, ...]  # empty on unified
    unified: Hierarchy | None  # None on legacy

    def v1_for(self, controller: str) -> Hierarchy | None:
        for h in self.v1:
            if controller in h.controllers:
                return h
        return None

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        """Where `controller` is managed. v1 is authoritative for every controller
        that has a v1 hierarchy (a hybrid host's cgroup2 side may list a stray one,
        like hugetlb)."""
        h = self.v1_for(controller)
        if h is not None:
            return h
        if self.unified is not None and controller in self.unified.controllers:
            return self.unified
        return None

    def hierarchies(self) -> tuple[Hierarchy, ...]:
        return self.v1 + ((self.unified,) if self.unified is not None else ())

    def describe(self) -> str:
        if self.kind is LayoutKind.UNIFIED:
            return "unified (cgroup2)"
        if self.kind is LayoutKind.HYBRID:
            return "hybrid (v1 controllers + cgroup2)"
        return "legacy (cgroup v1)"


def parse_mountinfo(text: str) -> list[Mount]:
    """procfs.parse_mountinfo, with a malformed line as a CgroupError."""
    try:
        return procfs.parse_mountinfo(text)
    except ValueError as e:
        raise CgroupError(MOUNTINFO, None, str(e)) from e


def _v1_controllers(options: tuple[str, ...]) -> list[str]:
    return [o for o in options if o in V1_CONTROLLERS or o.startswith(NAMED_PREFIX)]


def layout_from_mounts(mounts: list[Mount], root: Path, unified_controllers: frozenset[str] | None = None) -> Layout:
    """Decide the layout from the mounts at and under `root`.

    `unified_controllers` is the content of the cgroup2 mount's cgroup.controllers
    (read by `detect`; tests pass it in)."""
    # A later mount on the same point hides an earlier one.
    by_point: dict[Path, Mount] = {}
    for m in mounts:
        if m.mount_point == root or root in m.mount_point.parents:
            by_point[m.mount_point] = m
    controllers2 = unified_controllers or frozenset()

    top = by_point.get(root)
    if top is not None and top.fstype == FSTYPE_CGROUP2:
        return Layout(LayoutKind.UNIFIED, root, (), Hierarchy(UNIFIED, controllers2, root, top.root))

    v1: list[Hierarchy] = []
    unified: Hierarchy | None = None
    for point, m in sorted(by_point.items()):
        if point.parent != root:
            continue
        if m.fstype == FSTYPE_CGROUP1:
            names = _v1_controllers(m.super_options)
            if names:
                v1.append(Hierarchy(",".join(names), frozenset(names), point, m.root))
        elif m.fstype == FSTYPE_CGROUP2 and unified is None:
            unified = Hierarchy(UNIFIED, controllers2, point, m.root)
    if not v1:
        if unified is not None:
            # A cgroup2 mount below a tmpfs and nothing else: use it as a pure v2 host.
            return Layout(LayoutKind.UNIFIED, unified.mount, (), unified)
        raise CgroupError(root, None, "expected a cgroup2 mount or cgroup v1 hierarchies here; found neither")
    # v1 is authoritative: drop from the v2 side every controller that has a v1 home.
    v1_names = frozenset().union(*(h.controllers for h in v1))
    if unified is not None:
        unified = Hierarchy(UNIFIED, unified.controllers - v1_names, unified.mount, unified.mount_root)
        return Layout(LayoutKind.HYBRID, root, tuple(v1), unified)
    return Layout(LayoutKind.LEGACY, root, tuple(v1), None)


def detect(root: Path = DEFAULT_ROOT, mountinfo: Path = MOUNTINFO) -> Layout:
    """Detect the host's layout under `root` (injectable for tests)."""
    mounts = parse_mountinfo(mountinfo.read_text())
    layout = layout_from_mounts(mounts, root)
    if layout.unified is None:
        return layout
    controllers_file = layout.unified.mount / CGROUP_CONTROLLERS
    try:
        controllers = frozenset(controllers_file.read_text().split())
    except OSError as e:
        raise CgroupError(controllers_file, None, f"expected a readable cgroup2 controller list: {e.strerror}") from e
    return layout_from_mounts(mounts, root, controllers)
