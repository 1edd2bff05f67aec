"""Shared test fixtures.

Tiers: tests/unit (pure, no root, no I/O), tests/integration (root: real
cgroups, overlay mounts, namespaces), tests/systemd (a real systemd booted as
PID 1 of a sandbox), tests/e2e (a real supd driven by the real supctl).

Integration tests use `no_leaks`: mounts and supd-looking cgroups are
snapshotted before and after, and anything new of the test's own is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")


def is_root() -> bool:
    return os.geteuid() == 0


requires_root = pytest.mark.skipif(not is_root(), reason="needs root")


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        # mount point (field 5) + mount source is enough to spot a leak
        return {line.split()[4] for line in f}


def _supd_cgroups() -> set[str]:
    """Every cgroup directory (3 levels deep) whose name looks like one of ours."""
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for top, dirs, _files in os.walk(CGROUP_ROOT):
        depth = Path(top).relative_to(CGROUP_ROOT).parts
        if len(depth) >= 5:
            dirs[:] = []
            continue
        for d in dirs:
            if d.startswith("supd") or "supdtest" in d:
                found.add(os.path.join(top, d))
    return found


@pytest.fixture
def unique_name() -> str:
    """A short name no other test (or parallel session) uses: supdtest<hex>."""
    return "supdtest" + uuid.uuid4().hex[:10]


@pytest.fixture
def no_leaks(unique_name: str, tmp_path: Path) -> Iterator[None]:
    """Fail the test if it leaves a mount under tmp_path or a cgroup/mount named
    after `unique_name`. Scoped to this test's own names so that tests running
    in parallel (other sessions on this machine) don't trip each other."""

    def mine(path: str) -> bool:
        return unique_name in path or path.startswith(str(tmp_path))

    before_mounts, before_cgroups = _mounts(), _supd_cgroups()
    yield
    leaked_mounts = {m for m in _mounts() - before_mounts if mine(m)}
    leaked_cgroups = {c for c in _supd_cgroups() - before_cgroups if mine(c)}
    assert not leaked_mounts, f"mounts left behind: {sorted(leaked_mounts)}"
    assert not leaked_cgroups, f"cgroups left behind: {sorted(leaked_cgroups)}"


# The pure cgroup v2 VM tier (tests/vm, `make test-v2`): every test that
# touches cgroups, mounts, namespaces, systemd or a whole supd runs there too.
PUREV2_DIRS = ("integration", "e2e", "systemd")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.path.relative_to(here).parts[0] in PUREV2_DIRS:
            item.add_marker(pytest.mark.purev2)
