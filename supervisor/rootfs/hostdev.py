"""`[rootfs].devices` entries resolved on the host: each must be a character
or block device node there (a symlink to one is followed, as docker does).
Its type, numbers, mode and owner are what the container's node gets, and
its type and numbers are what the scope's device rules allow."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from supervisor.cgroups.devices import BLOCK, CHAR, DeviceRule, rule
from supervisor.rootfs.errors import RootfsError
from supervisor.runtime.spec import DeviceNode
from supervisor.units.model import Unit


@dataclass(frozen=True)
class HostDevice:
    node: DeviceNode  # what the spawner makes in the container's /dev
    access: str  # "rwm" or less

    def rule(self) -> DeviceRule:
        return rule(self.node.kind, self.node.major, self.node.minor, self.access)  # type: ignore[arg-type]


def _kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a device"


def resolve(unit: Unit) -> tuple[HostDevice, ...]:
    """Every device entry of `unit`, or a RootfsError naming the unit file,
    the key (`[rootfs].devices[1]`) and the entry."""
    if unit.rootfs is None:
        return ()
    found: list[HostDevice] = []
    for i, device in enumerate(unit.rootfs.devices):
        key = f"[rootfs].devices[{i}]"
        try:
            st = os.stat(device.path)
        except FileNotFoundError:
            raise RootfsError(unit.file, key, f'device "{device.path}" does not exist on this host') from None
        except OSError as e:
            raise RootfsError(unit.file, key, f'device "{device.path}" cannot be read: {e.strerror}') from None
        if stat.S_ISCHR(st.st_mode):
            kind = CHAR
        elif stat.S_ISBLK(st.st_mode):
            kind = BLOCK
        else:
            raise RootfsError(
                unit.file, key,
                f'"{device.path}" is {_kind_of(st.st_mode)} on this host, expected a character or block device',
            )  # fmt: skip
        node = DeviceNode(
            path=device.path,
            kind=kind,
            major=os.major(st.st_rdev),
            minor=os.minor(st.st_rdev),
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
        )
        found.append(HostDevice(node=node, access=device.access))
    return tuple(found)
