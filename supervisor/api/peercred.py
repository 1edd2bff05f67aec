"""Who is on the other end of the control socket: its uid and every group it holds.

What each peer may do is access.py's business; this module only reads.

SO_PEERCRED gives the peer's pid, uid and gid as of connect(). Supplementary
groups are not part of it, so they come from /proc/<pid>/status (`Groups:`),
falling back to the group database when the process is already gone.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
UCRED = struct.Struct("3i")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }
STATUS_GROUPS = "Groups:"
STATUS_GID = "Gid:"


class SocketGroupError(Exception):
    """A configured group (socket_group, admin_group) does not exist."""

    def __init__(self, group: str, key: str = "socket_group") -> None:
        super().__init__(f'{key} "{group}": no such group in the group database; expected an existing group name or gid')
        self.group = group
        self.key = key


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size)
    pid, uid, gid = UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def resolve_group(group: str, key: str = "socket_group") -> int:
    """A group name (or a numeric gid) → gid; `SocketGroupError` naming `key` if unknown."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise SocketGroupError(group, key) from None


def parse_status_groups(status_text: str) -> set[int]:
    """Every gid in a /proc/<pid>/status text: the `Gid:` line (real, effective,
    saved, fs) and the supplementary `Groups:` line."""
    gids: set[int] = set()
    for line in status_text.splitlines():
        if line.startswith(STATUS_GROUPS) or line.startswith(STATUS_GID):
            gids.update(int(g) for g in line.split(":", 1)[1].split())
    return gids


def peer_groups(cred: PeerCredentials, proc: Path = PROC) -> set[int]:
    try:
        text = (proc / str(cred.pid) / "status").read_text()
    except OSError:
        text = ""
    if text:
        return parse_status_groups(text) | {cred.gid}
    try:
        name = pwd.getpwuid(cred.uid).pw_name
        return set(os.getgrouplist(name, cred.gid)) | {cred.gid}
    except KeyError:
        return {cred.gid}
