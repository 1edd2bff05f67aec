"""Wake up when a cgroup's memory use crosses a threshold — from the kernel,
not by sampling.

cgroup v1: an eventfd registered through `cgroup.event_control` against
`memory.usage_in_bytes` with the threshold (Documentation/admin-guide/
cgroup-v1/memory.rst, "Memory thresholds"). The kernel signals the eventfd
whenever usage crosses the threshold, in either direction, so a wake-up is
"look again", never "it is over" — callers re-read usage.

cgroup v2 has no thresholds: memory.high is set to the threshold, and the
`high` counter in memory.events (which the kernel marks modified, waking
inotify) says usage went over it. memory.high throttles rather than kills, so
the unit is slowed down, not lost, in the moment before it is frozen.

Either way the watch is bound to one threshold; re-arm (close, open a new one)
when the limit changes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol

import anyio
import structlog

from supervisor.cgroups import tree
from supervisor.cgroups.driver import UNIFIED, CgroupRef

log = structlog.get_logger()

V1_EVENT_CONTROL = "cgroup.event_control"
V1_MEMORY_USAGE = tree.V1_MEMORY_USAGE
V2_MEMORY_CURRENT = tree.MEMORY_CURRENT
V2_MEMORY_HIGH = tree.MEMORY_HIGH
V2_MEMORY_EVENTS = tree.MEMORY_EVENTS
V2_HIGH_COUNTER = "high"

# inotify on memory.events may miss nothing in practice, but a bounded
# re-read keeps a lost event from hiding a crossing for ever.
V2_RECHECK = 5.0


class MemoryWatchError(Exception):
    """A memory watch could not be set up; carries the cgroup path and what was expected."""

    def __init__(self, path: Path | str, expected: str, reason: str) -> None:
        self.path = str(path)
        self.expected = expected
        self.reason = reason
        super().__init__(f"{self.path}: expected {expected}: {reason}")


class MemoryWatch(Protocol):
    threshold: int

    def usage(self) -> int:
        """Bytes charged to the cgroup now."""
        ...

    async def wait(self) -> None:
        """Return when the kernel says usage may have crossed the threshold."""
        ...

    def close(self) -> None: ...


class V1ThresholdWatch:
    """memory.usage_in_bytes threshold notification through an eventfd."""

    def __init__(self, memory_dir: Path, threshold: int) -> None:
        self.threshold = threshold
        self.directory = memory_dir
        self._usage_fd = -1
        self._event_fd = -1
        try:
            self._usage_fd = os.open(memory_dir / V1_MEMORY_USAGE, os.O_RDONLY | os.O_CLOEXEC)
            self._event_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            tree.write(memory_dir, V1_EVENT_CONTROL, f"{self._event_fd} {self._usage_fd} {threshold}")
        except (OSError, tree.CgroupError) as e:
            self.close()
            raise MemoryWatchError(memory_dir, f"a v1 memory cgroup accepting a threshold of {threshold}", str(e)) from e

    def usage(self) -> int:
        return int(os.pread(self._usage_fd, 64, 0).decode().strip())

    async def wait(self) -> None:
        await anyio.wait_readable(self._event_fd)
        try:
            os.eventfd_read(self._event_fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        # Closing the eventfd unregisters the threshold (the kernel sees POLLHUP).
        for fd in (self._event_fd, self._usage_fd):
            if fd >= 0:
                os.close(fd)
        self._event_fd = self._usage_fd = -1


def high_counter(memory_events: str) -> int:
    return int(tree.keyed(memory_events).get(V2_HIGH_COUNTER, "0"))


def v2_high_value(threshold: int, unit_memory_high: int | None) -> int:
    """memory.high to arm with: the threshold, unless the unit asks for a lower high."""
    if unit_memory_high is not None and unit_memory_high < threshold:
        return unit_memory_high
    return threshold


class V2HighWatch:
    """memory.high at the threshold; memory.events' `high` counter via inotify."""

    def __init__(self, unified_dir: Path, threshold: int, unit_memory_high: int | None = None) -> None:
        self.threshold = threshold
        self.directory = unified_dir
        try:
            tree.write(unified_dir, V2_MEMORY_HIGH, str(v2_high_value(threshold, unit_memory_high)))
            self._inotify = tree.watch_file(unified_dir / V2_MEMORY_EVENTS)
        except tree.CgroupError as e:
            raise MemoryWatchError(unified_dir, "a cgroup2 directory with the memory controller", str(e)) from e
        self._high_seen = high_counter(tree.read(unified_dir, V2_MEMORY_EVENTS))

    def usage(self) -> int:
        return int(tree.read(self.directory, V2_MEMORY_CURRENT).strip())

    async def wait(self) -> None:
        while True:
            await self._inotify.wait(V2_RECHECK)
            count = high_counter(tree.read(self.directory, V2_MEMORY_EVENTS))
            if count != self._high_seen:
                self._high_seen = count
                return
            if self.usage() >= self.threshold:
                return

    def close(self) -> None:
        self._inotify.close()


def open_memory_watch(ref: CgroupRef, threshold: int, unit_memory_high: int | None = None) -> MemoryWatch:
    """A watch on the unit's scope: v1 when a memory hierarchy holds it, else v2."""
    v1 = ref.hierarchy_for("memory")
    if v1 is not None and (v1 / V1_EVENT_CONTROL).exists():
        return V1ThresholdWatch(v1, threshold)
    unified = ref.path(UNIFIED)
    if unified is not None and (unified / V2_MEMORY_EVENTS).exists() and (unified / V2_MEMORY_HIGH).exists():
        return V2HighWatch(unified, threshold, unit_memory_high)
    where = v1 or unified or (ref.paths[0][1] if ref.paths else ref.scope)
    raise MemoryWatchError(where, "a memory controller (v1 cgroup.event_control or v2 memory.events)", "none found")


def gone(e: OSError) -> bool:
    """The cgroup went away under the watch (the unit ended)."""
    return e.errno in (errno.ENODEV, errno.ENOENT)
