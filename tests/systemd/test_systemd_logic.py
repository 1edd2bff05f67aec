"""Pure parts of the systemd driver: no root, no D-Bus, no I/O."""

from __future__ import annotations

import asyncio
import mmap
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jeepney import Header, Message, MessageType

from supervisor.cgroups import translate
from supervisor.cgroups.dbus import DBusError, _JobResults, is_private_socket
from supervisor.cgroups.driver import UNIFIED, CgroupError, CgroupRef
from supervisor.cgroups.layout import Hierarchy
from supervisor.cgroups.systemd import (
    ERR_INVALID_ARGS,
    ERR_NO_SUCH_UNIT,
    ERR_PROPERTY_READ_ONLY,
    OOM_POLICY,
    OomWatch,
    SystemdDriver,
    at_the_limit,
    gate_by_version,
    oom_kill_count,
    parse_version,
    quiet_gate,
    refused_property,
    scope_paths,
)


@pytest.mark.parametrize(
    ("text", "version"), [("252.39-1~deb12u2", 252), ("v255", 255), ("249", 249), ("246.1-rc", 246)]
)
def test_parse_version(text: str, version: int) -> None:
    assert parse_version(text) == version


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(CgroupError, match="expected a version number"):
        parse_version("unknown")


def test_gate_by_version_drops_too_new_properties_with_a_warning() -> None:
    props = [("PIDs", ("au", [1])), (translate.SD_ALLOWED_CPUS, ("ay", b"\x01")), (translate.SD_MEMORY_MAX, ("t", 1))]
    kept, warnings = gate_by_version("web", props, 243)
    assert [p[0] for p in kept] == ["PIDs", translate.SD_MEMORY_MAX]
    assert warnings == [
        "web: [resources].cpuset: systemd property AllowedCPUs needs systemd >= 244, this is 243; limit not applied"
    ]
    kept, warnings = gate_by_version("web", props, 252)
    assert kept == props and warnings == []


def test_refused_property_is_named_by_systemds_message() -> None:
    props = [("PIDs", ("au", [1])), ("MemoryMax", ("t", 1)), ("MemoryMaxFoo", ("t", 1))]
    err = DBusError(ERR_PROPERTY_READ_ONLY, "Cannot set property MemoryMaxFoo, or unknown property.")
    assert refused_property(err, props) == "MemoryMaxFoo"
    err = DBusError(ERR_INVALID_ARGS, "Invalid MemoryMax value")
    assert refused_property(err, props) == "MemoryMax"


def test_refused_property_never_drops_essentials_or_guesses() -> None:
    props = [("PIDs", ("au", [1])), ("Slice", ("s", "x")), ("MemoryMax", ("t", 1))]
    # an essential property is refused: an error, not a dropped property
    assert refused_property(DBusError(ERR_INVALID_ARGS, "Slice x is not a slice"), props) is None
    # a refusal that names no property we sent
    assert refused_property(DBusError(ERR_INVALID_ARGS, "Unit name 'x' is not a slice"), props) is None
    # other errors are not refusals at all
    assert refused_property(DBusError(ERR_NO_SUCH_UNIT, "MemoryMax"), props) is None


def test_scope_paths_maps_control_group_onto_each_mount() -> None:
    cg = "/supd.slice/supd-web.slice/supd-web.scope"
    hierarchies = [
        Hierarchy("unified", frozenset(), Path("/sys/fs/cgroup/unified")),
        Hierarchy("memory", frozenset({"memory"}), Path("/sys/fs/cgroup/memory")),
        # a container's mount that shows only its own part of the hierarchy
        Hierarchy("name=systemd", frozenset(), Path("/mnt/sd"), mount_root="/supd.slice"),
        Hierarchy("pids", frozenset({"pids"}), Path("/mnt/pids"), mount_root="/other"),
    ]
    assert scope_paths(cg, hierarchies) == (
        ("memory", Path("/sys/fs/cgroup/memory" + cg)),
        ("name=systemd", Path("/mnt/sd/supd-web.slice/supd-web.scope")),
        ("unified", Path("/sys/fs/cgroup/unified" + cg)),
    )


def test_private_socket_is_recognised() -> None:
    assert is_private_socket("unix:path=/run/systemd/private")
    assert is_private_socket("unix:path=/proc/1/root/run/systemd/private")
    assert not is_private_socket("unix:path=/run/dbus/system_bus_socket")


def _job_removed(job: str, result: str) -> Message:
    header = Header(endianness="<", message_type=MessageType.signal, flags=0, protocol_version=1, body_length=0, serial=1, fields={})
    return Message(header, (7, job, "x.scope", result))


@pytest.mark.asyncio
async def test_job_results_before_and_after_waiting() -> None:
    jobs = _JobResults()
    # the signal can arrive before the caller has read StartTransientUnit's reply
    jobs.put_nowait(_job_removed("/job/1", "done"))
    assert await jobs.wait("/job/1", timeout=1) == "done"
    waiter = asyncio.ensure_future(jobs.wait("/job/2", timeout=5))
    await asyncio.sleep(0)
    jobs.put_nowait(_job_removed("/job/3", "failed"))  # someone else's job
    jobs.put_nowait(_job_removed("/job/2", "dependency"))
    assert await waiter == "dependency"
    with pytest.raises(TimeoutError):
        await jobs.wait("/job/4", timeout=0.05)


def test_oom_policy_is_sent_only_to_a_systemd_that_knows_it() -> None:
    props = [("PIDs", ("au", [1])), (OOM_POLICY, ("s", "continue"))]
    assert quiet_gate(props, 252) == [("PIDs", ("au", [1]))]
    assert quiet_gate(props, 253) == props


def _memory_events(kills: int) -> str:
    return f"low 0\nhigh 0\nmax 12\noom 1\noom_kill {kills}\noom_group_kill 0\n"


def test_oom_kill_count_reads_memory_events() -> None:
    assert oom_kill_count(_memory_events(3)) == 3
    assert oom_kill_count("low 0\nhigh 0\n") is None


async def _until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# inotify on an ordinary file behaves as on memory.events: IN_MODIFY on a
# write, IN_IGNORED once the file is gone. No root, no cgroup needed.


@pytest.mark.asyncio
async def test_oom_watch_keeps_the_count_after_the_file_is_gone(tmp_path: Path) -> None:
    a, b = tmp_path / "a.events", tmp_path / "b.events"
    a.write_text(_memory_events(0))
    b.write_text(_memory_events(5))
    watch = OomWatch()
    try:
        watch.watch(a)
        watch.watch(b)  # one inotify instance (and thread) for every scope
        assert (watch.kills(a), watch.kills(b)) == (0, 5)
        a.write_text(_memory_events(2))
        await _until(lambda: watch.kills(a) == 2, "the watch to read oom_kill 2")
        a.unlink()
        await _until(lambda: a not in list(watch._files.values()), "IN_IGNORED for the removed file")
        assert watch.kills(a) == 2 and watch.kills(b) == 5
        b.write_text(_memory_events(6))
        await _until(lambda: watch.kills(b) == 6, "the other file still followed")
        watch.unwatch(a)
        assert watch.kills(a) is None and not watch.watching(a)
    finally:
        watch.close()


@pytest.mark.asyncio
async def test_oom_watch_reads_a_file_at_its_limit_without_waiting_for_a_notification(tmp_path: Path) -> None:
    """The kernel's notification for oom_kill can come too late (rate limit)
    or never (the scope removed first). A write through a shared mapping
    changes the file without any inotify event, as that lost notification."""
    events = tmp_path / "memory.events"
    events.write_text("max 0\noom 0\noom_kill 0\n")
    watch = OomWatch()
    try:
        watch.watch(events)
        with open(events, "r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
            with open(events, "r+") as g:  # an ordinary write: a notification, the limit reached
                g.write("max 1\n")
            await _until(lambda: events in watch._hot, "the file to be read without notifications")
            mapped[mapped.find(b"oom_kill 0")+9] = ord("1")  # no notification for this one
            await _until(lambda: watch.kills(events) == 1, "the kill to be read by polling")
        events.unlink()
        await _until(lambda: events not in watch._hot, "the polling to end with the file")
        assert watch.kills(events) == 1
    finally:
        watch.close()


def test_at_the_limit_is_a_rise_of_max_or_oom() -> None:
    base = {"low": 0, "high": 3, "max": 2, "oom": 0, "oom_kill": 0}
    assert at_the_limit(base, {**base, "max": 3})
    assert at_the_limit(base, {**base, "oom": 1})
    assert not at_the_limit(base, {**base, "high": 9})
    assert not at_the_limit(base, base)


@pytest.mark.asyncio
async def test_driver_stats_report_oom_kills_seen_before_systemd_removed_the_scope(tmp_path: Path) -> None:
    scope = tmp_path / "supd-web.scope"
    scope.mkdir()
    (scope / "memory.events").write_text(_memory_events(0))
    ref = CgroupRef(unit="web", scope="supd-web.scope", slice="supd.slice", paths=((UNIFIED, scope),), driver="systemd")
    driver = SystemdDriver(None, 252)  # type: ignore[arg-type]  # stats() never uses the bus
    try:
        assert driver.stats(ref).oom_kills == 0  # starts the watch
        (scope / "memory.events").write_text(_memory_events(1))  # the kernel's OOM kill
        await _until(lambda: driver._oom.kills(scope / "memory.events") == 1, "the watch to see the kill")
        shutil.rmtree(scope)  # systemd garbage-collects the emptied scope
        assert driver.stats(ref).oom_kills == 1
        driver._unwatch_oom(ref)  # what remove() does
        assert driver.stats(ref).oom_kills is None
    finally:
        driver._oom.close()
