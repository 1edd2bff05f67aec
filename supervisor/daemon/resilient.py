"""Daemon-wide tasks that survive their own errors.

The folder watch, housekeeping, the API server, the pressure freezer, the
state writer and the reaper each run under `keep_running`: an exception is
logged with the task's name, the task waits (doubling from `FIRST_DELAY` to
`MAX_DELAY`, back to the start after a `CALM` spell without errors) and runs
again. supd never ends because one of them failed; cancellation (shutdown)
still ends them at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import structlog
from anyio.abc import TaskStatus

log = structlog.get_logger()

FIRST_DELAY: Final = 1.0
MAX_DELAY: Final = 60.0
CALM: Final = 60.0


def next_delay(delay: float, ran_for: float) -> float:
    """The wait after this failure, given the last wait and how long the task ran. Pure."""
    if ran_for >= CALM:
        return FIRST_DELAY
    return min(max(delay, FIRST_DELAY / 2) * 2, MAX_DELAY)


class _Once:
    """Passes the first `started()` on; remembers that it did."""

    def __init__(self, inner: TaskStatus[None]) -> None:
        self.inner = inner
        self.done = False

    def started(self, value: None = None) -> None:
        if not self.done:
            self.done = True
            self.inner.started(value)


async def keep_running(
    name: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    task_status: TaskStatus[None] | None = None,
    **kwargs: Any,
) -> None:
    """Run `fn(*args, **kwargs)` until it returns, again after each error.

    With `tg.start(keep_running, ..., task_status=...)` (anyio passes it),
    `fn` gets a `task_status` too: an error before its first `started()` is
    a start-up error and propagates (a socket in use must still stop supd);
    after that it restarts like any other.
    """
    once = _Once(task_status) if task_status is not None else None
    delay = FIRST_DELAY / 2
    while True:
        started = time.monotonic()
        try:
            if once is not None:
                await fn(*args, task_status=once, **kwargs)
            else:
                await fn(*args, **kwargs)
            return
        except Exception as e:
            if once is not None and not once.done:
                raise
            delay = next_delay(delay, time.monotonic() - started)
            log.exception("daemon_task_failed", task=name, error=str(e), retry_in=delay)
        await anyio.sleep(delay)
