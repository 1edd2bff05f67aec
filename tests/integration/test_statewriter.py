"""Unit records written off the event loop: newest wins, removals stick."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from supervisor.daemon.state_store import StateStore, UnitRecord
from supervisor.daemon.statewriter import StateWriter


def rec(name: str, state: str = "running", pid: int | None = 10, restarts: int = 0) -> UnitRecord:
    return UnitRecord(name=name, state=state, since=1.0, pid=pid, restarts=restarts)


@pytest.mark.asyncio
async def test_batches_are_written_in_a_thread_newest_record_wins(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.save(rec("a", restarts=1))
        writer.save(rec("a", restarts=2))
        writer.save(rec("b"))
        with anyio.fail_after(5):
            while not (store.path_for("a").exists() and store.path_for("b").exists()):
                await anyio.sleep(0.01)
        writer.remove("b")
        with anyio.fail_after(5):
            while store.path_for("b").exists():
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    records, problems = store.load_all()
    assert problems == []
    assert set(records) == {"a"} and records["a"].restarts == 2


def test_freeze_and_thaw_do_not_rewrite_and_flush_writes_the_rest(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store)
    writer.save(rec("a", state="running"))
    writer.flush()
    first = store.path_for("a").stat().st_mtime_ns
    writer.save(rec("a", state="frozen"))  # same process: nothing a new supd needs
    assert writer._pending == {}
    writer.save(rec("a", state="exited", pid=None))
    writer.flush()
    assert store.path_for("a").stat().st_mtime_ns >= first
    assert store.load_all()[0]["a"].state == "exited"


@pytest.mark.asyncio
async def test_a_batch_in_flight_never_puts_an_older_record_over_a_write_through(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store)
    started, release = anyio.Event(), anyio.Event()
    real_save = store.save

    def slow_save(record: UnitRecord, *, durable: bool = True, sync_folder: bool = True) -> None:
        if record.state == "restarting":  # the older record, caught in its batch
            anyio.from_thread.run_sync(started.set)
            anyio.from_thread.run(release.wait)
        real_save(record, durable=durable, sync_folder=sync_folder)

    store.save = slow_save  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.save(rec("a", state="restarting", pid=None))
        with anyio.fail_after(5):
            await started.wait()
        # the batch holds the write lock while it waits: the newer record
        # queues behind it and lands last
        tg.start_soon(writer.write_through, rec("a", state="starting", pid=42))
        await anyio.sleep(0.05)
        release.set()
        with anyio.fail_after(5):
            while store.load_all()[0].get("a") is None or store.load_all()[0]["a"].state != "starting":
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert store.load_all()[0]["a"].pid == 42


@pytest.mark.asyncio
async def test_an_older_record_still_in_flight_after_a_write_through_is_dropped(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    writer = StateWriter(store)
    writer.save(rec("a", state="restarting", pid=None))
    in_flight, writer._pending = writer._pending, {}  # what run() takes for its batch
    await writer.write_through(rec("a", state="starting", pid=42))
    writer._write(in_flight)  # the batch's thread gets to it only now
    assert store.load_all()[0]["a"].pid == 42
