"""Fixtures shared by the integration tests: the runtime's spawner and
reaper, and a cgroupfs driver on a root of the test's own."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from supervisor.cgroups import tree
from supervisor.cgroups.cgroupfs import CgroupfsDriver
from supervisor.cgroups.layout import Layout, detect
from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner

DRIVER_DEADLINE = 30.0


@pytest.fixture
def reaper() -> Reaper:
    return Reaper.install()


@pytest.fixture
def spawner(reaper: Reaper, no_leaks: None) -> Iterator[Spawner]:
    spawner = Spawner.launch(reaper)
    yield spawner
    spawner.close()


@pytest.fixture
def layout() -> Layout:
    return detect()


@pytest_asyncio.fixture
async def driver(layout: Layout, unique_name: str, no_leaks: None) -> AsyncIterator[CgroupfsDriver]:
    d = CgroupfsDriver(layout, "/" + unique_name)
    yield d
    # Whatever the test left: kill it and remove the test's whole root.
    for root in d.roots.values():
        for cg in tree.walk(root):
            tree.signal_pids(tree.procs(cg), signal.SIGKILL)
    for root in d.roots.values():
        deadline = time.monotonic() + DRIVER_DEADLINE
        while any(tree.procs(cg) for cg in tree.walk(root)) and time.monotonic() < deadline:
            time.sleep(0.02)
        await tree.rmdir_tree(root, attempts=12)
