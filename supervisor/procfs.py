"""Reading /proc: the one place supd parses what the kernel says about
processes, mounts and cgroup membership, and about the machine's boot.

- stat: a process's state and start time (`same_process`: the recorded
  process, not a later one given the same pid, as runc's `hasInit` checks);
- mountinfo: mounts, with the kernel's octal escapes undone (cgroup layout
  detection, mount-point checks, where cgroup hierarchies are mounted);
- cgroup membership: /proc/<pid>/cgroup, and whether a pid sits in a scope;
- the boot id, read once by the daemon at start and handed on as a value, so
  every decision that depends on "did the machine reboot?" takes it as an
  input and is tested without /proc.

Parsers are pure (text in, values out) and tested on fake text; the readers
around them are thin.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
MOUNTINFO = PROC / "self" / "mountinfo"
# A random UUID the kernel makes at every boot (random(4)).
BOOT_ID = PROC / "sys" / "kernel" / "random" / "boot_id"
# Key of the cgroup2 hierarchy in parse_proc_cgroup (same as cgroups.driver.UNIFIED).
UNIFIED = "unified"

# /proc/<pid>/stat: field 3 is the state, field 22 the start time; both are
# counted after the comm field, which may itself contain spaces and ')'.
STAT_STATE_FIELD = 3
STAT_STARTTIME_FIELD = 22
DEAD_STATES = frozenset({"Z", "X", "x"})  # zombie, dead


# --- the boot ------------------------------------------------------------------


def boot_id(path: Path = BOOT_ID, init_stat: Path = PROC / "1" / "stat") -> str:
    """This boot's identity: the kernel's boot id, and the start time of
    PID 1 of supd's pid namespace ("<boot id>@<ticks>"). A container (or a
    systemd sandbox) that reboots gets a new PID 1 on the same kernel, and
    nothing of its old processes is left either: that is a new boot too.
    "" when the kernel does not tell (then every record counts as being from
    this boot: the pid + start time check still guards against adopting a
    stranger)."""
    try:
        kernel = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    try:
        init = parse_stat(init_stat.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        init = None
    return kernel if init is None else f"{kernel}@{init[1]}"


# --- stat ----------------------------------------------------------------------

def parse_stat(text: str) -> tuple[str, int] | None:
    """(state, start time) from the text of /proc/<pid>/stat, or None if it
    does not look like one.

    comm (field 2) is in parentheses and may contain spaces and ')', so the
    fields are counted from the LAST ')'.
    """
    _, paren, rest = text.rpartition(")")
    if not paren:
        return None
    fields = rest.split()
    # fields[0] is field 3
    try:
        state = fields[STAT_STATE_FIELD - 3]
        start_time = int(fields[STAT_STARTTIME_FIELD - 3])
    except (IndexError, ValueError):
        return None
    return state, start_time


def read_stat(pid: int) -> tuple[str, int] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    return parse_stat(text)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), None if there is no such process."""
    stat = read_stat(pid)
    return None if stat is None else stat[1]


def same_process(pid: int | None, start_time: int | None) -> bool:
    """True only if `pid` is alive (not a zombie) and started at `start_time`:
    the process we recorded, not a later one that was given the same pid."""
    if pid is None or start_time is None or pid <= 0:
        return False
    stat = read_stat(pid)
    if stat is None:
        return False
    state, actual = stat
    return state not in DEAD_STATES and actual == start_time


# --- mountinfo -------------------------------------------------------------------


def unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo (octal)."""
    if "\\" not in field_text:
        return field_text
    out, i = bytearray(), 0
    raw = field_text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        chunk = raw[i + 1 : i + 4]
        if raw[i] == 0x5C and len(chunk) == 3 and all(0x30 <= c <= 0x37 for c in chunk):
            out.append(int(chunk, 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo, the fields supd needs."""

    mount_point: Path
    root: str  # the path inside the filesystem that is mounted here
    fstype: str
    super_options: tuple[str, ...]


def parse_mountinfo(text: str, *, strict: bool = True) -> list[Mount]:
    """Parse mountinfo (proc(5)): fields up to the optional ones, a "-", then
    fstype, source and super options. A malformed line raises ValueError
    naming its number, or is skipped with strict=False."""
    mounts: list[Mount] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            mounts.append(
                Mount(
                    mount_point=Path(unescape(fields[4])),
                    root=unescape(fields[3]),
                    fstype=fields[sep + 1],
                    super_options=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
                )
            )
        except (ValueError, IndexError) as e:
            if strict:
                raise ValueError(f"line {lineno}: expected a mountinfo line with a ' - ' separator") from e
    return mounts


def is_mount_point(path: Path, mountinfo: Path = MOUNTINFO) -> bool:
    wanted = Path(os.path.abspath(path))
    return any(m.mount_point == wanted for m in parse_mountinfo(mountinfo.read_text(), strict=False))


# --- cgroup membership -------------------------------------------------------------


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup -> hierarchy key ("memory", "cpu,cpuacct", "unified") -> path."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _id, controllers, path = parts
        out[controllers or UNIFIED] = path
    return out


CGROUP_FSTYPES = ("cgroup", "cgroup2")
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "noprefix", "xattr", "clone_children", "cpuset_v2_mode", "nsdelegate", "none"}
)


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup hierarchy as mounted in this mount namespace."""

    mount_point: Path
    root: str  # the hierarchy path that appears at mount_point
    controllers: frozenset[str]  # empty for cgroup2; "name=systemd" for named v1


def parse_cgroup_mounts(mountinfo: str) -> list[CgroupMount]:
    """Cgroup mounts from the text of /proc/<pid>/mountinfo."""
    mounts: list[CgroupMount] = []
    for m in parse_mountinfo(mountinfo, strict=False):
        if m.fstype not in CGROUP_FSTYPES:
            continue
        if m.fstype == "cgroup2":
            controllers: frozenset[str] = frozenset()
        else:
            controllers = frozenset(
                o
                for o in m.super_options
                if o not in _V1_NON_CONTROLLER_OPTIONS and ("=" not in o or o.startswith("name="))
            )
        mounts.append(CgroupMount(m.mount_point, m.root, controllers))
    return mounts


def cgroup_dirs(proc_cgroup: str, mounts: Iterable[CgroupMount]) -> list[Path]:
    """The cgroupfs directories a process is in, from the text of
    /proc/<pid>/cgroup (`id:controllers:path` lines) and the cgroup mounts."""
    mounts = list(mounts)
    dirs: list[Path] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hierarchy_id, controller_list, cgroup_path = parts
        wanted = frozenset(c for c in controller_list.split(",") if c)
        for mount in mounts:
            # cgroup2 is the "0::" line and the mount without controllers;
            # a v1 hierarchy matches on its exact controller set
            if mount.controllers != wanted:
                continue
            relative = _relative_to_root(cgroup_path, mount.root)
            if relative is not None:
                dirs.append(mount.mount_point / relative if relative else mount.mount_point)
    return dirs


def _relative_to_root(cgroup_path: str, root: str) -> str | None:
    cgroup_path = cgroup_path.rstrip("/") or "/"
    root = root.rstrip("/") or "/"
    if root == "/":
        return cgroup_path.lstrip("/")
    if cgroup_path == root:
        return ""
    if cgroup_path.startswith(root + "/"):
        return cgroup_path[len(root) + 1 :]
    return None


def in_cgroup(pid: int, cgroup_paths: Iterable[Path | str]) -> bool:
    """True if `pid` sits in (or below) any of `cgroup_paths`, which are
    cgroupfs directories as seen in supd's mount namespace (a CgroupRef's
    `paths`). False if the process is gone."""
    try:
        proc_cgroup = (PROC / str(pid) / "cgroup").read_text(encoding="utf-8")
        mountinfo = (PROC / "self" / "mountinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    actual = [os.path.normpath(d) for d in cgroup_dirs(proc_cgroup, parse_cgroup_mounts(mountinfo))]
    for wanted in cgroup_paths:
        target = os.path.normpath(wanted)
        if any(d == target or d.startswith(target + "/") for d in actual):
            return True
    return False
