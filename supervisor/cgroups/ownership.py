"""One supd per cgroup root, and what of a cgroup tree is supd's own.

The lock is tied to the root itself: an exclusive flock(2) on the root's
cgroup directory (the hierarchy's own root for `cgroup_root = "/"` and for
the systemd driver, whose `supd.slice` sits there). Two supds on one root
open the same kernfs inode whatever their mount namespace, runtime or state
folders, so the second one is refused; the lock goes with the process that
holds it (a crashed supd leaves nothing stale behind); units that live-restore
keeps running do not hold it. The owner record (pid, state and runtime
folders) is an extended attribute on that same directory, so the refusal can
name the owner.

Pure parts (the owner record, which directory is locked, whether a recorded
scope path lies inside supd's slices) are tested without root; `acquire` is
the thin shell.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from supervisor.cgroups.driver import UNIFIED
from supervisor.cgroups.names import ROOT_SLICE, SCOPE_PREFIX, SLICE_SUFFIX, scope_name

log = structlog.get_logger()

# trusted.* needs CAP_SYS_ADMIN to write and to read: only root sees who owns a root.
OWNER_XATTR = "trusted.supd.owner"


@dataclass(frozen=True)
class Owner:
    pid: int
    state_dir: str
    runtime_dir: str

    def to_bytes(self) -> bytes:
        return json.dumps({"pid": self.pid, "state_dir": self.state_dir, "runtime_dir": self.runtime_dir}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Owner | None:
        """The record, or None if it is not one (written by something else)."""
        try:
            value: Any = json.loads(data)
            return cls(pid=int(value["pid"]), state_dir=str(value["state_dir"]), runtime_dir=str(value["runtime_dir"]))
        except (ValueError, TypeError, KeyError):
            return None


class RootOwnedError(Exception):
    """Another supd holds this cgroup root."""

    def __init__(self, root: Path, owner: Owner | None) -> None:
        self.root, self.owner = root, owner
        if owner is None:
            who = "another supd (its owner record is unreadable)"
        else:
            who = f"another supd (pid {owner.pid}, state_dir {owner.state_dir}, runtime_dir {owner.runtime_dir})"
        super().__init__(
            f"cgroup root {root} is owned by {who}; stop it, or give this supd a cgroup root of its own "
            "(--cgroup-root /NAME with --cgroup-driver cgroupfs)"
        )


def lock_directory(roots: Mapping[str, Path]) -> Path | None:
    """Which of a driver's roots (hierarchy key -> directory) carries the lock:
    the cgroup2 one where there is one, else the first by key that is not a
    v1 cpuset hierarchy. The same rule
    for every driver, so that a cgroupfs supd on "/" and a systemd-driver supd
    (both owning `/supd.slice`) lock the same directory."""
    if not roots:
        return None
    if UNIFIED in roots:
        return roots[UNIFIED]
    # not a v1 cpuset hierarchy: a directory made there needs cpus and mems filled in
    keys = sorted(roots, key=lambda k: ("cpuset" in k.split(","), k))
    return roots[keys[0]]


def scope_path_problem(unit: str, key: str, path: Path, roots: Mapping[str, Path]) -> str | None:
    """Why a recorded scope directory is not one supd may touch for `unit`, or
    None if it is `<root>/supd.slice/[supd-*.slice/...]supd-<unit>.scope` in a
    hierarchy supd uses. Pure: the path is never resolved on disk (a record
    must not steer supd outside its own slices)."""
    root = roots.get(key)
    if root is None:
        return f'paths["{key}"]: {path} is in a hierarchy supd does not use here'
    top = root / ROOT_SLICE
    if ".." in path.parts or not path.is_absolute() or top not in path.parents:
        return f'paths["{key}"]: {path} is outside supd\'s slice {top}'
    inner = path.relative_to(top).parts
    if inner[-1] != scope_name(unit):
        return f'paths["{key}"]: {path} is not the scope of unit "{unit}" (expected {scope_name(unit)})'
    for part in inner[:-1]:
        if not (part.startswith(SCOPE_PREFIX) and part.endswith(SLICE_SUFFIX)):
            return f'paths["{key}"]: {path} passes through "{part}", which is not a supd slice'
    return None


class RootLock:
    """The held lock; `release()` at supd's exit (the kernel drops it anyway
    when the process ends)."""

    def __init__(self, fd: int, directory: Path) -> None:
        self.fd, self.directory = fd, directory

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.removexattr(self.fd, OWNER_XATTR)
        except OSError:
            pass  # never written (no xattr support), or the root is gone
        os.close(self.fd)
        self.fd = -1


def read_owner(directory: Path) -> Owner | None:
    try:
        return Owner.from_bytes(os.getxattr(directory, OWNER_XATTR))
    except OSError:
        return None


def acquire(directory: Path, owner: Owner) -> RootLock:
    """Lock `directory` (which must exist) for `owner`; RootOwnedError if
    another supd holds it."""
    for _attempt in range(3):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RootOwnedError(directory, read_owner(directory)) from None
        except BaseException:
            os.close(fd)
            raise
        # The previous owner may have removed a root it made between our open
        # and our flock: a lock on a deleted directory protects nothing.
        try:
            same = os.fstat(fd).st_ino == os.stat(directory).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            directory.mkdir(parents=True, exist_ok=True)
            continue
        try:
            os.setxattr(fd, OWNER_XATTR, owner.to_bytes())
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                os.close(fd)
                raise
            log.warning("cgroup_owner_record_unavailable", root=str(directory), error=e.strerror)
        log.info("cgroup_root_locked", root=str(directory), pid=owner.pid)
        return RootLock(fd, directory)
    raise OSError(errno.EAGAIN, f"{directory}: kept disappearing while being locked")
