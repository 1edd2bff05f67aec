"""A userns unit's upper dir belongs to its mapped root on disk; when the unit
gets another block, what it wrote moves with it (root: lchown)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from supervisor.daemon.userns import own_upper
from supervisor.policy.idranges import IdMapping
from tests.conftest import requires_root

pytestmark = [requires_root, pytest.mark.root]

OLD = IdMapping(3_300_000, 3_400_000)
NEW = IdMapping(3_500_000, 3_600_000)


def ids(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_a_fresh_upper_is_given_to_the_mapped_root(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    own_upper(upper, NEW)
    assert ids(upper) == (NEW.uid, NEW.gid)


def test_a_used_upper_moves_to_the_new_block_keeping_foreign_ids(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "home" / "app").mkdir(parents=True)
    (upper / "home" / "app" / "f").write_text("data")
    (upper / "suid").write_text("#!/bin/sh\n")
    os.symlink("/nowhere", upper / "link")
    (upper / "foreign").write_text("x")
    for path in (upper, upper / "home", upper / "suid"):
        os.lchown(path, OLD.uid, OLD.gid)
    os.lchown(upper / "home" / "app", OLD.uid + 1000, OLD.gid + 1000)
    os.lchown(upper / "home" / "app" / "f", OLD.uid + 1000, OLD.gid + 1000)
    os.lchown(upper / "link", OLD.uid + 5, OLD.gid + 5)
    os.lchown(upper / "foreign", 12345, 12345)  # not the old block's: left alone
    os.chmod(upper / "suid", 0o4755)
    own_upper(upper, NEW)
    assert ids(upper) == (NEW.uid, NEW.gid)
    assert ids(upper / "home") == (NEW.uid, NEW.gid)
    assert ids(upper / "home" / "app") == (NEW.uid + 1000, NEW.gid + 1000)
    assert ids(upper / "home" / "app" / "f") == (NEW.uid + 1000, NEW.gid + 1000)
    assert ids(upper / "link") == (NEW.uid + 5, NEW.gid + 5)
    assert os.readlink(upper / "link") == "/nowhere"
    assert ids(upper / "foreign") == (12345, 12345)
    assert stat.S_IMODE(os.lstat(upper / "suid").st_mode) == 0o4755  # chown cleared it; put back
    own_upper(upper, NEW)  # nothing to do the second time
    assert ids(upper / "home" / "app" / "f") == (NEW.uid + 1000, NEW.gid + 1000)


def test_an_upper_of_a_host_userns_unit_is_shifted_up(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "rootfile").write_text("x")
    (upper / "appfile").write_text("x")
    os.lchown(upper / "appfile", 1000, 1000)
    own_upper(upper, NEW)
    assert ids(upper / "rootfile") == (NEW.uid, NEW.gid)
    assert ids(upper / "appfile") == (NEW.uid + 1000, NEW.gid + 1000)
