"""memwatch on the real kernel: a real process growing past the threshold
wakes the watch — v1's threshold eventfd, or v2's memory.high counter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from supervisor.cgroups.driver import CgroupRef
from supervisor.cgroups.memwatch import MemoryWatchError, V1ThresholdWatch, V2HighWatch, open_memory_watch
from tests.conftest import requires_root
from tests.helpers.cgroups import ThrowawayCgroup

MB = 1024 * 1024

pytestmark = [requires_root]

# Grows by 1 MiB per line read on stdin, touching every page, then says so.
GROWER = """
import sys
held = []
for line in sys.stdin:
    held.append(b"\\x01" * (int(line) * 1024 * 1024))
    print(len(held), flush=True)
"""


@pytest.fixture
def memcg(unique_name: str, no_leaks: None) -> Iterator[ThrowawayCgroup]:
    with ThrowawayCgroup(unique_name, "memory") as cg:
        cg.limit_memory(128 * MB)
        yield cg


@pytest.fixture
def grower(memcg: ThrowawayCgroup) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", GROWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        memcg.add(proc.pid)
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()


def grow(proc: subprocess.Popen[str], mib: int) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{mib}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip()


def test_threshold_fires_when_usage_crosses(memcg: ThrowawayCgroup, grower: subprocess.Popen[str]) -> None:
    async def main() -> None:
        base = memcg.memory_usage()
        threshold = base + 40 * MB
        watch = open_memory_watch(memcg.ref(), threshold)
        assert isinstance(watch, V2HighWatch if memcg.unified else V1ThresholdWatch)
        try:
            assert watch.usage() < threshold
            # Below the threshold: no wake-up.
            await anyio.to_thread.run_sync(grow, grower, 10)
            with anyio.move_on_after(1.0) as quiet:
                await watch.wait()
            assert quiet.cancelled_caught, f"woke below the threshold: usage {watch.usage()} < {threshold}"
            # Cross it: the kernel wakes us.
            await anyio.to_thread.run_sync(grow, grower, 40)
            with anyio.fail_after(10):
                await watch.wait()
            assert watch.usage() >= threshold
        finally:
            watch.close()

    anyio.run(main)


def test_rearm_at_a_higher_threshold(memcg: ThrowawayCgroup, grower: subprocess.Popen[str]) -> None:
    async def main() -> None:
        base = memcg.memory_usage()
        first = open_memory_watch(memcg.ref(), base + 20 * MB)
        await anyio.to_thread.run_sync(grow, grower, 25)
        with anyio.fail_after(10):
            await first.wait()
        first.close()
        second = open_memory_watch(memcg.ref(), base + 60 * MB)
        try:
            assert second.usage() < second.threshold
            with anyio.move_on_after(1.0) as quiet:
                await second.wait()
            assert quiet.cancelled_caught
            await anyio.to_thread.run_sync(grow, grower, 40)
            with anyio.fail_after(10):
                await second.wait()
            assert second.usage() >= second.threshold
        finally:
            second.close()

    anyio.run(main)


def test_no_memory_controller_is_a_clear_error(tmp_path: Path) -> None:
    ref = CgroupRef(unit="t", scope="x", slice="supd.slice", paths=(("pids", tmp_path),), driver="cgroupfs")
    with pytest.raises(MemoryWatchError, match="expected a memory controller"):
        open_memory_watch(ref, 1000)
