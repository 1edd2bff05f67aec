"""Who is on the other end of the control socket: the peer's groups, as access.py's levels see them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from supervisor.api.access import Groups, Level, peer_level
from supervisor.api.peercred import (
    PeerCredentials,
    SocketGroupError,
    parse_status_groups,
    peer_groups,
    resolve_group,
    socket_peer_groups,
)

STATUS = """Name:\tcurl
Uid:\t1000\t1000\t1000\t1000
Gid:\t1000\t1001\t1000\t1000
Groups:\t4 24 100
"""


def test_status_groups_include_gid_line_and_supplementary() -> None:
    assert parse_status_groups(STATUS) == {1000, 1001, 4, 24, 100}
    assert parse_status_groups("Gid:\t5\t5\t5\t5\nGroups:\t\n") == {5}


def fake_proc(tmp_path: Path, pid: int, text: str) -> Path:
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "status").write_text(text)
    return tmp_path


def level(peer: PeerCredentials, proc: Path, socket_gid: int | None, admin_gid: int | None = None) -> Level:
    groups = Groups(socket_group="s", socket_gid=socket_gid, admin_group="a", admin_gid=admin_gid)
    return peer_level(peer.uid, peer_groups(peer, proc), groups)


def test_root_is_always_admin(tmp_path: Path) -> None:
    assert level(PeerCredentials(pid=1, uid=0, gid=0), tmp_path, None) is Level.ADMIN


def test_group_members_by_any_gid_of_the_process(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 42, STATUS)
    peer = PeerCredentials(pid=42, uid=1000, gid=1000)
    assert level(peer, proc, 100) is Level.OPERATOR  # supplementary
    assert level(peer, proc, 1001) is Level.OPERATOR  # effective gid
    assert level(peer, proc, 999) is Level.NOBODY
    assert level(peer, proc, None) is Level.NOBODY, "without a socket group only root may connect"
    assert level(peer, proc, 999, admin_gid=24) is Level.ADMIN  # admin_group, supplementary
    assert level(peer, proc, 100, admin_gid=998) is Level.OPERATOR


def test_gone_process_falls_back_to_its_primary_gid(tmp_path: Path) -> None:
    peer = PeerCredentials(pid=999999, uid=2_000_000_000, gid=777)
    assert level(peer, tmp_path, 777) is Level.OPERATOR
    assert level(peer, tmp_path, 778) is Level.NOBODY
    assert level(peer, tmp_path, 778, admin_gid=777) is Level.ADMIN


def test_resolve_group() -> None:
    assert resolve_group("root") == 0
    assert resolve_group("4242") == 4242
    with pytest.raises(SocketGroupError, match='socket_group "supdtest-nogroup": no such group'):
        resolve_group("supdtest-nogroup")
    with pytest.raises(SocketGroupError, match='admin_group "supdtest-nogroup": no such group'):
        resolve_group("supdtest-nogroup", "admin_group")


def test_socket_groups_are_the_peers_as_of_connect(tmp_path: Path) -> None:
    """SO_PEERGROUPS on a socketpair: our own supplementary groups, and they
    win over /proc (here a fake one saying otherwise)."""
    a, b = socket.socketpair()
    with a, b:
        assert socket_peer_groups(a) == set(os.getgroups())
        proc = fake_proc(tmp_path, os.getpid(), "Gid:\t4242\t4242\t4242\t4242\nGroups:\t4243\n")
        peer = PeerCredentials(pid=os.getpid(), uid=os.getuid(), gid=os.getegid())
        assert peer_groups(peer, proc, sock=a) == set(os.getgroups()) | {os.getegid()}
        assert peer_groups(peer, proc) == {4242, 4243, os.getegid()}, "without the socket: /proc"
