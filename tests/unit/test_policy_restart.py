"""Exit statuses, systemd's Restart= table, and the exponential backoff."""

from __future__ import annotations

import os
import signal

import pytest

from supervisor.policy.restart import Backoff, ExitStatus, backoff_delay, should_restart
from supervisor.units.model import RestartSpec


def test_from_wait_exited() -> None:
    assert ExitStatus.from_wait(os.CLD_EXITED, 3) == ExitStatus(code=3, signal=None, reason="exit 3")


@pytest.mark.parametrize("si_code", [os.CLD_KILLED, os.CLD_DUMPED])
def test_from_wait_killed(si_code: int) -> None:
    assert ExitStatus.from_wait(si_code, 9) == ExitStatus(code=None, signal=9, reason="signal SIGKILL")


def test_from_wait_refuses_stopped_children() -> None:
    with pytest.raises(ValueError, match="CLD_EXITED"):
        ExitStatus.from_wait(os.CLD_STOPPED, 19)


EXITED_0 = ExitStatus.exited(0)
EXITED_1 = ExitStatus.exited(1)
SIGTERM = ExitStatus.killed(signal.SIGTERM)
SIGKILL = ExitStatus.killed(signal.SIGKILL)
SIGSEGV = ExitStatus.killed(signal.SIGSEGV)
OOM = SIGKILL.because("oom-kill")
HEALTH = SIGTERM.because("health")
TIMEOUT = EXITED_0.because("timeout")
USER = SIGTERM.because("user")


@pytest.mark.parametrize(
    ("status", "clean"),
    [
        (EXITED_0, True), (EXITED_1, False), (SIGTERM, True), (ExitStatus.killed(signal.SIGHUP), True),
        (ExitStatus.killed(signal.SIGINT), True), (ExitStatus.killed(signal.SIGPIPE), True),
        (SIGKILL, False), (SIGSEGV, False), (OOM, False), (HEALTH, False), (TIMEOUT, False),
    ],
)  # fmt: skip
def test_clean(status: ExitStatus, clean: bool) -> None:
    assert status.clean is clean


# systemd.service(5) Restart= table: rows are how the process ended.
RESTART_TABLE = [
    # status,   no,    on-failure, on-abnormal, always
    (EXITED_0, False, False, False, True),
    (EXITED_1, False, True, False, True),
    (SIGTERM, False, False, False, True),
    (SIGKILL, False, True, True, True),
    (SIGSEGV, False, True, True, True),
    (OOM, False, True, True, True),
    (HEALTH, False, True, True, True),
    (TIMEOUT, False, True, True, True),
]


@pytest.mark.parametrize(("status", "no", "on_failure", "on_abnormal", "always"), RESTART_TABLE)
def test_restart_table(status: ExitStatus, no: bool, on_failure: bool, on_abnormal: bool, always: bool) -> None:
    assert should_restart("no", status) is no
    assert should_restart("on-failure", status) is on_failure
    assert should_restart("on-abnormal", status) is on_abnormal
    assert should_restart("always", status) is always


@pytest.mark.parametrize("policy", ["no", "on-failure", "on-abnormal", "always"])
@pytest.mark.parametrize("status", [EXITED_1, SIGKILL, OOM])
def test_a_user_stop_never_restarts(policy: str, status: ExitStatus) -> None:
    assert should_restart(policy, status, user_stop=True) is False  # type: ignore[arg-type]
    assert should_restart(policy, USER) is False  # type: ignore[arg-type]


SPEC = RestartSpec(delay=0.1, max_delay=1.0, reset_after=60.0)


def test_backoff_delay_doubles_and_caps() -> None:
    assert [backoff_delay(SPEC, n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_delay(SPEC, 10_000) == 1.0
    assert backoff_delay(RestartSpec(delay=0.0), 50) == 0.0


def crash_loop(backoff: Backoff, runs: int, now: float = 1000.0, run_for: float = 1.0) -> list[float]:
    """Start, run `run_for` seconds, exit, wait the full delay; repeated."""
    delays = []
    for _ in range(runs):
        backoff.started(now)
        now += run_for
        delay = backoff.exited(now)
        assert backoff.delay_for_next_start(now) == pytest.approx(delay)
        delays.append(delay)
        now += delay
        assert backoff.delay_for_next_start(now) == pytest.approx(0.0)
    return delays


def test_backoff_grows_then_caps() -> None:
    assert crash_loop(Backoff(SPEC), 7) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_backoff_resets_after_a_long_run() -> None:
    backoff = Backoff(SPEC)
    crash_loop(backoff, 4)
    backoff.started(5000.0)
    assert backoff.exited(5060.0) == pytest.approx(0.1)  # ran exactly reset_after
    backoff.started(5061.0)
    assert backoff.exited(5062.0) == pytest.approx(0.2)


def test_backoff_remaining_time_counts_down() -> None:
    backoff = Backoff(SPEC)
    crash_loop(backoff, 3)  # next delay will be 0.8
    backoff.started(2000.0)
    assert backoff.exited(2001.0) == pytest.approx(0.8)
    assert backoff.delay_for_next_start(2001.5) == pytest.approx(0.3)
    assert backoff.delay_for_next_start(2010.0) == 0.0


def test_backoff_clock_rollback_resets_and_never_goes_negative_or_above_the_delay() -> None:
    backoff = Backoff(SPEC)
    crash_loop(backoff, 4)
    backoff.started(3000.0)
    assert backoff.exited(10.0) == pytest.approx(0.1)  # exit "before" start: treated as a reset
    assert backoff.delay_for_next_start(5.0) == pytest.approx(0.1)  # earlier than the exit: full delay, not more
    assert backoff.delay_for_next_start(10.05) == pytest.approx(0.05)


def test_backoff_exit_without_start_and_reset() -> None:
    backoff = Backoff(SPEC)
    assert backoff.delay_for_next_start(0.0) == 0.0
    assert backoff.exited(1.0) == pytest.approx(0.1)
    backoff.reset()
    assert backoff.restarts == 0 and backoff.delay_for_next_start(1.0) == 0.0
