"""cgroups.ownership, the pure parts: the owner record, which root directory
is locked, and whether a recorded scope path lies inside supd's slices."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.cgroups.ownership import Owner, RootOwnedError, lock_directory, scope_path_problem

ROOTS = {
    "memory": Path("/sys/fs/cgroup/memory/supd-dev"),
    "unified": Path("/sys/fs/cgroup/unified/supd-dev"),
}


def test_owner_record_round_trip_and_garbage() -> None:
    owner = Owner(pid=4321, state_dir="/var/lib/supd", runtime_dir="/run/supd")
    assert Owner.from_bytes(owner.to_bytes()) == owner
    assert Owner.from_bytes(b"not json") is None
    assert Owner.from_bytes(b'{"pid": "x"}') is None


def test_refusal_names_the_owner_and_the_way_out() -> None:
    message = str(RootOwnedError(Path("/sys/fs/cgroup/unified"), Owner(4321, "/var/lib/supd", "/run/supd")))
    assert "cgroup root /sys/fs/cgroup/unified" in message
    assert "pid 4321" in message and "state_dir /var/lib/supd" in message
    assert "--cgroup-root" in message
    assert "unreadable" in str(RootOwnedError(Path("/x"), None))


def test_lock_directory_prefers_cgroup2_then_the_first_hierarchy() -> None:
    assert lock_directory(ROOTS) == ROOTS["unified"]
    v1 = {"pids": Path("/p"), "blkio": Path("/b"), "memory": Path("/m")}
    assert lock_directory(v1) == Path("/b")
    assert lock_directory({"cpuset": Path("/c"), "memory": Path("/m")}) == Path("/m")
    assert lock_directory({}) is None


def test_the_units_own_scope_in_supd_slices_is_accepted() -> None:
    top = ROOTS["memory"] / "supd.slice"
    assert scope_path_problem("web", "memory", top / "supd-web.scope", ROOTS) is None
    assert scope_path_problem("web", "memory", top / "supd-batch.slice" / "supd-web.scope", ROOTS) is None


@pytest.mark.parametrize(
    ("key", "path", "expected"),
    [
        # issue 10: a record pointing outside the root made supd kill a foreign process
        ("memory", "/sys/fs/cgroup/memory/system.slice/ssh.service", "outside supd's slice"),
        ("memory", "/sys/fs/cgroup/memory/supd-dev/supd-web.scope", "outside supd's slice"),
        ("memory", "/sys/fs/cgroup/memory/supd-dev/supd.slice/../x/supd-web.scope", "outside supd's slice"),
        ("memory", "/sys/fs/cgroup/memory/supd-dev/supd.slice/supd-db.scope", 'not the scope of unit "web"'),
        ("memory", "/sys/fs/cgroup/memory/supd-dev/supd.slice/user.slice/supd-web.scope", "not a supd slice"),
        ("pids", "/sys/fs/cgroup/pids/supd-dev/supd.slice/supd-web.scope", "hierarchy supd does not use"),
    ],
)
def test_anything_else_is_a_problem_naming_the_path(key: str, path: str, expected: str) -> None:
    problem = scope_path_problem("web", key, Path(path), ROOTS)
    assert problem is not None and expected in problem and f'paths["{key}"]' in problem
