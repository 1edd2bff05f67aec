"""Unit records written off the event loop.

A save is a temporary file, an fsync and a rename (about 1 ms here), and a
start of 1000 units makes 2000 of them. They go to a worker thread in
batches, newest record per unit wins, one fsync of the folder per batch, one batch at a time
(so a unit's writes never overtake each other). What a crash can lose is the
last few milliseconds of records; a record that is missing or stale is safe,
because adoption checks pid, start time and scope before it trusts one.

One record cannot wait for a batch: the one naming a process about to exec
(`write_through`), so that a supd killed right after the exec re-adopts the
process instead of starting a second one. It is written at once, without
fsync (it only has to outlive supd, not the machine), and every record
carries a sequence number, so a batch in flight never puts an older record
back over a newer one.
"""

from __future__ import annotations

import itertools
import threading

import anyio
import structlog

from supervisor import failpoints
from supervisor.daemon.restore import adoption_key
from supervisor.daemon.state_store import StateStore, UnitRecord

log = structlog.get_logger()


class StateWriter:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        # name -> (sequence number, record; None: remove the record)
        self._pending: dict[str, tuple[int, UnitRecord | None]] = {}
        self._queued_keys: dict[str, tuple[object, ...]] = {}
        self._wake = anyio.Event()
        self._sequence = itertools.count(1)
        self._written: dict[str, int] = {}  # name -> sequence number on disk
        self._write_lock = threading.Lock()

    def save(self, record: UnitRecord) -> None:
        key = adoption_key(record)
        if self._queued_keys.get(record.name) == key:
            return  # nothing a restarted supd needs has changed (a freeze, a thaw)
        self._queued_keys[record.name] = key
        self._pending[record.name] = (next(self._sequence), record)
        self._wake.set()

    def remove(self, name: str) -> None:
        self._queued_keys.pop(name, None)
        self._pending[name] = (next(self._sequence), None)
        self._wake.set()

    async def write_through(self, record: UnitRecord) -> None:
        """Write `record` now (not durable), superseding what is queued for it."""
        self._pending.pop(record.name, None)
        self._queued_keys[record.name] = adoption_key(record)
        sequence = next(self._sequence)
        try:
            await failpoints.ahit("state.launch", record.name)
        except OSError as e:
            log.warning("state_save_failed", unit=record.name, error=str(e))
            return
        # On the loop when the lock is free (nearly always): an unsynced write
        # of a small file is cheaper than a hand-off to a worker thread, and a
        # start of 1000 units made 1000 hand-offs, with dozens of threads
        # queued on the lock behind a batch's fsyncs. A batch holds the lock
        # for one record at a time, so the thread path waits at most that.
        if self._write_lock.acquire(blocking=False):
            try:
                self._save_locked(record.name, sequence, record, durable=False)
            finally:
                self._write_lock.release()
            return
        await anyio.to_thread.run_sync(self._write, {record.name: (sequence, record)}, False, None)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            batch, self._pending = self._pending, {}
            # Shielded: a cancel arriving while the batch waits for a worker
            # thread would drop it (the last "inactive" of a shutdown was lost
            # that way, so the next supd took a stopped unit for a dead one);
            # a shutdown waits for the batch in flight instead.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._write, batch)

    def flush(self) -> None:
        """Write what is still pending, now (at shutdown, after run() ended)."""
        batch, self._pending = self._pending, {}
        self._write(batch)

    def _write(
        self, batch: dict[str, tuple[int, UnitRecord | None]], durable: bool = True, point: str | None = "state.save"
    ) -> None:
        for name, (sequence, record) in batch.items():
            if point is not None:
                try:
                    failpoints.hit(point, name)  # outside the lock: a stalled write holds up no other
                except OSError as e:
                    log.warning("state_save_failed", unit=name, error=str(e))
                    continue
            with self._write_lock:
                self._save_locked(name, sequence, record, durable=durable)
        if durable and batch:
            # One folder fsync for the whole batch makes all its renames durable
            # (not one per record: a 1000-unit start wrote ~2000 records).
            try:
                self.store.sync_folder()
            except OSError as e:
                log.warning("state_save_failed", error=str(e))

    def _save_locked(self, name: str, sequence: int, record: UnitRecord | None, *, durable: bool) -> None:
        if self._written.get(name, 0) > sequence:
            return  # a newer record is on disk already
        try:
            if record is None:
                self.store.remove(name, sync_folder=False)
            else:
                self.store.save(record, durable=durable, sync_folder=False)
            self._written[name] = sequence
        except OSError as e:  # a full disk loses a record, never supd
            log.warning("state_save_failed", unit=name, error=str(e))
