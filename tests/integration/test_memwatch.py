"""memwatch on the real kernel: a v1 memory cgroup's threshold eventfd fires
when a real process grows past it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from supervisor.cgroups.driver import CgroupRef
from supervisor.cgroups.memwatch import MemoryWatchError, V1ThresholdWatch, open_memory_watch
from tests.conftest import requires_root

V1_MEMORY = Path("/sys/fs/cgroup/memory")
MB = 1024 * 1024

pytestmark = [
    requires_root,
    pytest.mark.skipif(not (V1_MEMORY / "cgroup.event_control").exists(), reason="no v1 memory hierarchy with cgroup.event_control"),
]

# Grows by 1 MiB per line read on stdin, touching every page, then says so.
GROWER = """
import sys
held = []
for line in sys.stdin:
    held.append(b"\\x01" * (int(line) * 1024 * 1024))
    print(len(held), flush=True)
"""


@pytest.fixture
def memcg(unique_name: str, no_leaks: None) -> Iterator[Path]:
    path = V1_MEMORY / unique_name
    path.mkdir()
    try:
        (path / "memory.limit_in_bytes").write_text(str(128 * MB))
        yield path
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture
def grower(memcg: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", GROWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        (memcg / "cgroup.procs").write_text(str(proc.pid))
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()


def grow(proc: subprocess.Popen[str], mib: int) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{mib}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip()


def ref_for(memcg: Path) -> CgroupRef:
    return CgroupRef(unit="t", scope=memcg.name, slice="supd.slice", paths=(("memory", memcg),), driver="cgroupfs")


def test_v1_threshold_fires_when_usage_crosses(memcg: Path, grower: subprocess.Popen[str]) -> None:
    async def main() -> None:
        base = int((memcg / "memory.usage_in_bytes").read_text())
        threshold = base + 40 * MB
        watch = open_memory_watch(ref_for(memcg), threshold)
        assert isinstance(watch, V1ThresholdWatch)
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


def test_rearm_at_a_higher_threshold(memcg: Path, grower: subprocess.Popen[str]) -> None:
    async def main() -> None:
        base = int((memcg / "memory.usage_in_bytes").read_text())
        first = open_memory_watch(ref_for(memcg), base + 20 * MB)
        await anyio.to_thread.run_sync(grow, grower, 25)
        with anyio.fail_after(10):
            await first.wait()
        first.close()
        second = open_memory_watch(ref_for(memcg), base + 60 * MB)
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
