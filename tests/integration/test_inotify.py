"""supervisor.inotify on the real kernel: one instance for every watch, waits
that wake on their own file only, and polling when inotify has nothing to give."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from supervisor import inotify
from supervisor.inotify import IN_MODIFY, Inotify, Watch


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.asyncio
async def test_two_hundred_watches_share_one_instance(tmp_path: Path) -> None:
    ino = Inotify()
    before = fd_count()
    files = [tmp_path / f"f{i}" for i in range(200)]
    for f in files:
        f.write_text("")
    watches = [ino.watch(f, IN_MODIFY) for f in files]
    assert fd_count() == before + 1  # issue 10: one instance per follower ran out at ~128
    assert not any(w.polling for w in watches) and ino.watch_count() == 200
    for w in watches:
        w.close()
    assert ino.watch_count() == 0
    ino.close()


@pytest.mark.asyncio
async def test_each_waiter_wakes_for_its_own_file(tmp_path: Path) -> None:
    ino = Inotify()
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("")
    b.write_text("")
    woke: dict[str, float] = {}
    with ino.watch(a, IN_MODIFY) as wa, ino.watch(b, IN_MODIFY) as wb, ino.watch(a, IN_MODIFY) as wa2:
        start = time.monotonic()

        async def waiter(name: str, w: Watch) -> None:
            await w.wait(3.0)
            woke[name] = time.monotonic() - start

        async with anyio.create_task_group() as tg:
            for name, w in (("a", wa), ("b", wb), ("a2", wa2)):
                tg.start_soon(waiter, name, w)
            await anyio.sleep(0.2)
            a.write_text("x")  # wakes both watches of a, not b
        assert woke["a"] < 1.0 and woke["a2"] < 1.0, woke
        assert woke["b"] >= 2.9, woke
    assert ino.watch_count() == 0
    ino.close()


@pytest.mark.asyncio
async def test_a_deleted_file_wakes_its_watch_which_then_polls(tmp_path: Path) -> None:
    ino = Inotify()
    f = tmp_path / "gone"
    f.write_text("")
    w = ino.watch(f, IN_MODIFY)

    async def remove_soon() -> None:
        await anyio.sleep(0.1)
        f.unlink()

    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(remove_soon)
        while not w.polling and time.monotonic() - start < 3:
            await w.wait(3.0)
    assert w.polling and time.monotonic() - start < 2.0
    w.close()
    ino.close()


@pytest.mark.asyncio
async def test_a_polling_watch_times_out_and_a_missing_path_is_an_error(tmp_path: Path) -> None:
    w = Watch(None, tmp_path, None)
    start = time.monotonic()
    await w.wait(0.2)
    assert 0.2 <= time.monotonic() - start < 1.0
    with pytest.raises(FileNotFoundError):
        inotify.shared().watch(tmp_path / "nope", IN_MODIFY)


@pytest.mark.asyncio
async def test_the_systemd_drivers_oom_watch_uses_this_module_on_a_real_file(tmp_path: Path) -> None:
    from supervisor.cgroups.systemd import OomWatch

    events = tmp_path / "memory.events"
    events.write_text("oom 0\noom_kill 0\n")
    watch = OomWatch()
    watch.watch(events)
    try:
        with open(events, "w") as f:  # in place, as the kernel updates it
            f.write("oom 1\noom_kill 2\n")
        with anyio.fail_after(10):
            while watch.kills(events) != 2:
                await anyio.sleep(0.01)
        events.unlink()  # the cgroup is gone: IN_IGNORED ends the watch, the count stays
        with anyio.fail_after(10):
            while watch._files:
                await anyio.sleep(0.01)
        assert watch.kills(events) == 2
    finally:
        watch.close()
