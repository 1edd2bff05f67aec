"""Pinning a container's network namespace: a bind mount of /proc/<pid>/ns/net
on a file under runtime_dir keeps the namespace (and the veth end in it)
alive after the process is gone, so CNI DEL still finds what ADD made."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

MS_BIND = 4096
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def pin_path(runtime_dir: Path, unit_name: str) -> Path:
    return runtime_dir / "netns" / unit_name


def pin(pid: int, target: Path) -> None:
    """Bind /proc/<pid>/ns/net on `target` (made if missing)."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if is_pinned(target):
        unpin(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o400)
    os.close(fd)
    source = f"/proc/{pid}/ns/net".encode()
    if _libc.mount(source, str(target).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pin the network namespace of pid {pid} on {target}: {os.strerror(err)}")


def is_pinned(target: Path) -> bool:
    """A nsfs file is mounted there (st_dev differs from its folder's)."""
    try:
        return os.stat(target).st_dev != os.stat(target.parent).st_dev
    except FileNotFoundError:
        return False


def unpin(target: Path) -> None:
    """Unmount and remove the pin; a missing one is not an error."""
    while is_pinned(target):
        if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise OSError(err, f"unmount {target}: {os.strerror(err)}")
    try:
        target.unlink()
    except FileNotFoundError:
        pass
