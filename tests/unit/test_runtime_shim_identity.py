"""The shim's user lookup in a given root's /etc/passwd and /etc/group.
Pure apart from reading two files the test writes; no root needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SHIM = Path(__file__).resolve().parents[2] / "supervisor" / "runtime" / "shim.py"

PASSWD = """root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
# a comment
1234:x:4321:4321:named like a number:/n:/bin/sh
"""
GROUP = """root:x:0:
wheel:x:10:app,other
audio:x:29:app
nogroup:x:65534:
app:x:1000:
"""


def load_shim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("supd_shim_under_test", SHIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shim = load_shim()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


def test_name_gives_uid_gid_groups_and_home(root: Path) -> None:
    assert shim.resolve_user("app", str(root)) == (1000, 1000, [10, 29, 1000], "/home/app")
    assert shim.resolve_user("nobody", str(root)) == (65534, 65534, [65534], "/nonexistent")


def test_none_means_root(root: Path) -> None:
    assert shim.resolve_user(None, str(root)) == (0, 0, [0], "/root")


def test_numeric_uid_and_gid(root: Path) -> None:
    assert shim.resolve_user("1000:1000", str(root)) == (1000, 1000, [1000], "/home/app")
    assert shim.resolve_user("1000", str(root))[:2] == (1000, 1000)
    # no passwd entry: docker's default gid 0, home /
    assert shim.resolve_user("5000", str(root)) == (5000, 0, [0], "/")
    assert shim.resolve_user("5000:7", str(root)) == (5000, 7, [7], "/")


def test_group_by_name(root: Path) -> None:
    assert shim.resolve_user("app:wheel", str(root)) == (1000, 10, [10], "/home/app")


def test_a_name_wins_over_a_uid_that_looks_the_same(root: Path) -> None:
    assert shim.resolve_user("1234", str(root))[:2] == (4321, 4321)


def test_unknown_user_and_group_are_clear(root: Path) -> None:
    with pytest.raises(shim.ShimError, match='user "bob" not in /etc/passwd'):
        shim.resolve_user("bob", str(root))
    with pytest.raises(shim.ShimError, match='group "staff" not in /etc/group'):
        shim.resolve_user("app:staff", str(root))


def test_missing_passwd(tmp_path: Path) -> None:
    with pytest.raises(shim.ShimError, match='user "app": /etc/passwd not found'):
        shim.resolve_user("app", str(tmp_path))
    assert shim.resolve_user(None, str(tmp_path)) == (0, 0, [0], "/")


def test_executable_lookup_follows_path(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    env = {"PATH": f"/nonexistent:{tmp_path}"}
    assert shim.find_executable("tool", env) == str(tool)
    with pytest.raises(shim.ShimError, match="exec nope: No such file or directory"):
        shim.find_executable("nope", env)
    with pytest.raises(shim.ShimError, match="exec /x/y: No such file or directory"):
        shim.find_executable("/x/y", env)


def test_shim_imports_nothing_from_supervisor() -> None:
    source = SHIM.read_text()
    assert "import supervisor" not in source and "from supervisor" not in source
