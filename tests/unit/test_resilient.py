"""daemon.resilient: daemon-wide tasks outlive their own errors."""

from __future__ import annotations

import anyio
import pytest

from supervisor.daemon import resilient
from supervisor.daemon.resilient import CALM, FIRST_DELAY, MAX_DELAY, keep_running, next_delay


def test_delays_double_to_the_cap_and_reset_after_a_calm_run() -> None:
    delay = FIRST_DELAY / 2
    seen = []
    for _ in range(10):
        delay = next_delay(delay, 0.1)
        seen.append(delay)
    assert seen[:3] == [FIRST_DELAY, 2 * FIRST_DELAY, 4 * FIRST_DELAY] and seen[-1] == MAX_DELAY
    assert next_delay(MAX_DELAY, CALM) == FIRST_DELAY


def test_a_failing_task_runs_again_until_it_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient, "FIRST_DELAY", 0.01)
    runs = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise OSError(28, "No space left on device")

    anyio.run(keep_running, "flaky", flaky)
    assert len(runs) == 3


def test_a_start_up_error_propagates_a_later_one_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient, "FIRST_DELAY", 0.01)

    async def never_starts(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        raise OSError(98, "Address in use")

    async def start_broken() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(keep_running, "api", never_starts)

    with pytest.raises(BaseException) as info:
        anyio.run(start_broken)
    assert "Address in use" in repr(info.value)

    runs = []

    async def serves_then_breaks(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("bug")

    async def start_ok() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(keep_running, "api", serves_then_breaks)

    anyio.run(start_ok)
    assert len(runs) == 3
