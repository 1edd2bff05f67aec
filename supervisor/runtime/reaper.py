"""The daemon as a child subreaper: exit statuses through pidfds, and no
orphan left a zombie.

Every container pid 1 (and every exec-into relay) is re-parented to the
daemon when the spawner's intermediate process exits, because the daemon set
PR_SET_CHILD_SUBREAPER. A pid someone will `wait()` for must be `track()`ed
as soon as it is known (the Spawner does it when the spawner reports the
pid, before any await); `run()` reaps every other child on SIGCHLD, so
daemonising grandchildren that land on us never stay zombies.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

log = structlog.get_logger()

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
TASKS_DIR = Path("/proc/self/task")
# exit statuses kept for late waiters of an already reaped pid
RECENT_EXITS = 1024

try:
    from supervisor.policy.restart import ExitStatus
except ImportError:  # pragma: no cover - policy is written in parallel

    @dataclass(frozen=True)
    class ExitStatus:  # type: ignore[no-redef]
        code: int | None
        signal: int | None
        reason: str


UNKNOWN_EXIT = ExitStatus(code=None, signal=None, reason="exited (status unknown: not our child)")


class ReaperError(OSError):
    """The subreaper flag could not be set."""


def exit_status_from_siginfo(code: int, status: int) -> ExitStatus:
    """(si_code, si_status) of a waitid() result → ExitStatus."""
    if code == os.CLD_EXITED:
        return ExitStatus(code=status, signal=None, reason=f"exit {status}")
    try:
        name = signal.Signals(status).name
    except ValueError:
        name = str(status)
    return ExitStatus(code=None, signal=status, reason=f"signal {name}")


class _Waiter:
    """One pidfd wait per pid, shared by every task that waits on it."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.status: ExitStatus | None = None
        self.error: BaseException | None = None


class Reaper:
    def __init__(self) -> None:
        self._tracked: set[int] = set()
        self._waiters: dict[int, _Waiter] = {}
        self._recent: OrderedDict[int, ExitStatus] = OrderedDict()

    @classmethod
    def install(cls) -> Reaper:
        """Make this process a child subreaper (sync; call at start)."""
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise ReaperError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")
        return cls()

    def track(self, pid: int) -> None:
        """`pid` will be waited for: `run()` must leave its zombie alone."""
        self._tracked.add(pid)
        self._recent.pop(pid, None)  # a new process with a recycled pid

    def untrack(self, pid: int) -> None:
        self._tracked.discard(pid)

    def tracked(self, pid: int) -> bool:
        return pid in self._tracked

    @asynccontextmanager
    async def killed_on_error(self, pid: int) -> AsyncIterator[None]:
        """For a helper child (a plugin, skopeo) run to its end: if the block
        ends with an exception (its caller cancelled), the child is killed and
        reaped before the exception goes on."""
        try:
            yield
        except BaseException:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            with anyio.CancelScope(shield=True):
                await self.wait(pid)
            raise

    async def wait(self, pid: int) -> ExitStatus:
        """The exit status of child `pid` (running or already a zombie).
        Many tasks may wait on the same pid at once; it is reaped once."""
        while True:
            if pid in self._recent:
                return self._recent[pid]
            self._tracked.add(pid)
            waiter = self._waiters.get(pid)
            if waiter is not None:
                await waiter.done.wait()
                if waiter.error is not None:
                    raise waiter.error
                if waiter.status is not None:
                    return waiter.status
                continue  # that waiter was cancelled: take its place
            waiter = self._waiters[pid] = _Waiter()
            try:
                waiter.status = await self._reap(pid)
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as e:
                waiter.error = e
                self._tracked.discard(pid)
                raise
            finally:
                del self._waiters[pid]
                waiter.done.set()
            self._tracked.discard(pid)
            self._recent[pid] = waiter.status
            while len(self._recent) > RECENT_EXITS:
                self._recent.popitem(last=False)
            return waiter.status

    async def _reap(self, pid: int) -> ExitStatus:
        pidfd = os.pidfd_open(pid)
        try:
            while True:
                try:
                    result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
                except ChildProcessError:
                    # not our child (re-adopted after a daemon restart): a
                    # pidfd still says when it ends, but not how
                    await anyio.wait_readable(pidfd)
                    return UNKNOWN_EXIT
                if result is not None:
                    return exit_status_from_siginfo(result.si_code, result.si_status)
                await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)

    def reap_orphans(self) -> list[int]:
        """Reap every exited child nobody tracks; returns their pids."""
        reaped = []
        for pid in self._children():
            if pid in self._tracked:
                continue
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                reaped.append(pid)
        if reaped:
            log.debug("orphans_reaped", pids=reaped)
        return reaped

    @staticmethod
    def _children() -> list[int]:
        pids: list[int] = []
        try:
            tasks = list(TASKS_DIR.iterdir())
        except OSError:
            return pids
        for task in tasks:
            try:
                pids.extend(int(p) for p in (task / "children").read_text().split())
            except OSError:
                continue  # the thread ended meanwhile
        return pids

    async def run(self) -> None:
        """Reap untracked children on every SIGCHLD, until cancelled."""
        with anyio.open_signal_receiver(signal.SIGCHLD) as signals:
            self.reap_orphans()  # whatever exited before we listened
            async for _signum in signals:
                self.reap_orphans()
