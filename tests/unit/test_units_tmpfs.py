"""[rootfs].tmpfs entries and a read-only root's scratch tmpfs: pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.daemon.spawnspec import tmpfs_mount
from supervisor.runtime.spec import Tmpfs
from supervisor.units.model import BindSpec, RootfsSpec, TmpfsSpec
from supervisor.units.tmpfs import effective_tmpfs, parse_tmpfs


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("/run", TmpfsSpec("/run")),
        ("/tmp:size=64M", TmpfsSpec("/tmp", size=64 * 1024 * 1024)),
        ("/a/b/:mode=0755,exec,size=1k", TmpfsSpec("/a/b", size=1024, mode=0o755, options=("nosuid", "nodev"))),
        ("/x:suid,dev,ro", TmpfsSpec("/x", options=("noexec", "ro"))),
        ("/x:", TmpfsSpec("/x")),
    ],
)
def test_parse(text: str, spec: TmpfsSpec) -> None:
    assert parse_tmpfs(text) == spec


@pytest.mark.parametrize("text", ["run", "/", "/a/../b", "/t:size=", "/t:size=-1", "/t:mode=8", "/t:uid=0", 7])
def test_parse_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="a tmpfs like"):
        parse_tmpfs(text)


def test_a_writable_root_gets_only_its_own_list() -> None:
    rootfs = RootfsSpec(layers=(Path("/l"),), tmpfs=(TmpfsSpec("/tmp"),))
    assert effective_tmpfs(rootfs) == (TmpfsSpec("/tmp"),)


def test_readonly_root_gets_run_tmp_var_tmp_unless_covered() -> None:
    assert [t.target for t in effective_tmpfs(RootfsSpec(layers=(Path("/l"),), writable="readonly"))] == [
        "/run", "/tmp", "/var/tmp",
    ]  # fmt: skip
    rootfs = RootfsSpec(
        layers=(Path("/l"),),
        writable="readonly",
        tmpfs=(TmpfsSpec("/tmp", size=1024),),
        binds=(BindSpec(Path("/srv/var"), "/var"),),
    )
    assert effective_tmpfs(rootfs) == (TmpfsSpec("/tmp", size=1024), TmpfsSpec("/run", mode=0o755, options=("nosuid", "nodev")))
    # a bind below /run does not stand in for /run
    rootfs = RootfsSpec(layers=(Path("/l"),), writable="readonly", binds=(BindSpec(Path("/s"), "/run/sock"),))
    assert "/run" in [t.target for t in effective_tmpfs(rootfs)]


def test_spawn_spec_mount() -> None:
    assert tmpfs_mount(TmpfsSpec("/tmp", size=4096, mode=0o1777)) == Tmpfs("/tmp", "mode=1777,size=4096", ("nosuid", "nodev", "noexec"))
    assert tmpfs_mount(TmpfsSpec("/run", mode=0o755, options=())) == Tmpfs("/run", "mode=755", ())
    # in a user namespace of its own, container root owns them
    assert tmpfs_mount(TmpfsSpec("/run", mode=0o755), (3200000, 3300000)).data == "mode=755,uid=3200000,gid=3300000"
