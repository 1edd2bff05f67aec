"""Who may use the control socket: root, or a member of the socket's group."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.api.peercred import (
    PeerCredentials,
    SocketGroupError,
    is_allowed,
    parse_status_groups,
    resolve_group,
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


def test_root_is_always_allowed(tmp_path: Path) -> None:
    assert is_allowed(PeerCredentials(pid=1, uid=0, gid=0), None, tmp_path)


def test_group_member_allowed_others_not(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 42, STATUS)
    peer = PeerCredentials(pid=42, uid=1000, gid=1000)
    assert is_allowed(peer, 100, proc)
    assert is_allowed(peer, 1001, proc)  # effective gid
    assert not is_allowed(peer, 999, proc)
    assert not is_allowed(peer, None, proc), "without a socket group only root may connect"


def test_gone_process_falls_back_to_its_primary_gid(tmp_path: Path) -> None:
    peer = PeerCredentials(pid=999999, uid=2_000_000_000, gid=777)
    assert is_allowed(peer, 777, tmp_path)
    assert not is_allowed(peer, 778, tmp_path)


def test_resolve_group() -> None:
    assert resolve_group("root") == 0
    assert resolve_group("4242") == 4242
    with pytest.raises(SocketGroupError, match='socket_group "supdtest-nogroup": no such group'):
        resolve_group("supdtest-nogroup")
