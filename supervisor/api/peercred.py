"""Who is on the other end of the control socket: its uid and every group it holds.

What each peer may do is access.py's business; this module only reads.

SO_PEERCRED gives the peer's pid, uid and (effective) gid as of connect();
SO_PEERGROUPS (Linux >= 4.13) its supplementary groups, also as of connect(),
so nothing the peer does afterwards (exit, pid reuse) changes the answer.
Where SO_PEERGROUPS cannot say (an older kernel, more than 256 groups) they
come from /proc/<pid>/status (`Gid:` and `Groups:`), and from the group
database when the process is already gone.
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
# Not named by every Python build; the Linux value (asm-generic/socket.h).
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
MAX_GROUPS_BYTES = 1024  # CPython's getsockopt buffer limit: 256 gids
GID = struct.Struct("I")


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


def socket_peer_groups(sock: socket.socket) -> set[int] | None:
    """The peer's supplementary groups as of connect(); None when the kernel
    cannot say (before 4.13) or they do not fit in 256 entries (ERANGE)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, MAX_GROUPS_BYTES)
    except OSError:
        return None
    count = len(raw) // GID.size
    return set(struct.unpack(f"{count}I", raw[: count * GID.size]))


def peer_groups(cred: PeerCredentials, proc: Path = PROC, sock: socket.socket | None = None) -> set[int]:
    """Every gid the peer holds: from the socket (`sock`) when the kernel
    recorded them, else from /proc or the group database."""
    recorded = socket_peer_groups(sock) if sock is not None else None
    if recorded is not None:
        return recorded | {cred.gid}
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
