"""The one-supd-per-root lock on a real cgroup directory (root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.cgroups import ownership
from supervisor.cgroups.layout import detect
from supervisor.cgroups.ownership import Owner, RootOwnedError
from tests.conftest import requires_root

pytestmark = [requires_root, pytest.mark.root]


@pytest.fixture
def root_dir(unique_name: str, no_leaks: None) -> Iterator[Path]:
    found = detect()
    hierarchy = found.unified or found.v1[0]
    directory = hierarchy.mount / unique_name
    directory.mkdir()
    yield directory
    directory.rmdir()


def test_second_lock_on_the_same_root_is_refused_naming_the_owner(root_dir: Path) -> None:
    first = ownership.acquire(root_dir, Owner(111, "/var/lib/supd", "/run/supd"))
    try:
        assert ownership.read_owner(root_dir) == Owner(111, "/var/lib/supd", "/run/supd")
        # flock is per open file: a second open, even in this process, is a second supd
        with pytest.raises(RootOwnedError, match=r"pid 111, state_dir /var/lib/supd"):
            ownership.acquire(root_dir, Owner(222, "/tmp/other", "/tmp/other-run"))
    finally:
        first.release()
    second = ownership.acquire(root_dir, Owner(222, "/tmp/other", "/tmp/other-run"))
    assert ownership.read_owner(root_dir) == Owner(222, "/tmp/other", "/tmp/other-run")
    second.release()
    assert ownership.read_owner(root_dir) is None  # no stale owner record


def test_a_lock_survives_nothing_but_its_holder(root_dir: Path) -> None:
    import subprocess
    import sys

    # A holder that dies (kill -9) leaves the root free: the kernel drops flocks.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from supervisor.cgroups import ownership as o; "
         f"o.acquire(Path({str(root_dir)!r}), o.Owner(1, 's', 'r')); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        while (line := holder.stdout.readline()) != b"held\n":  # past structlog's line
            assert line, "the holder died before it held the lock"
        with pytest.raises(RootOwnedError):
            ownership.acquire(root_dir, Owner(2, "s", "r"))
    finally:
        holder.kill()
        holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            assert pipe is not None
            pipe.close()
    ownership.acquire(root_dir, Owner(2, "s", "r")).release()
