"""Why a unit's process ended, whether to start it again, and how long to
wait first. Pure: every function takes `now` (monotonic seconds).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Final

from supervisor.units.model import RestartPolicy, RestartSpec
from supervisor.units.values import signal_name

# systemd's "clean" signals: a process ending on these did what it was asked.
CLEAN_SIGNALS: Final = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})
# Ends that supd (not the process) decided on; they count as failures and as abnormal,
# as systemd's timeout, watchdog and oom-kill results do.
FAILURE_REASONS: Final = frozenset({"oom-kill", "health", "timeout", "max-frozen"})
USER_REASON: Final = "user"
# Doubling stops long before float overflow; the cap applies far earlier anyway.
_MAX_DOUBLINGS: Final = 64


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    signal: int | None
    reason: str  # "exit 1", "signal SIGKILL", "oom-kill", "health", "timeout", "user", ...

    @classmethod
    def exited(cls, code: int) -> ExitStatus:
        return cls(code=code, signal=None, reason=f"exit {code}")

    @classmethod
    def killed(cls, signo: int) -> ExitStatus:
        return cls(code=None, signal=signo, reason=f"signal {signal_name(signo)}")

    @classmethod
    def from_wait(cls, si_code: int, si_status: int) -> ExitStatus:
        """From waitid()'s siginfo: CLD_EXITED carries the code, CLD_KILLED/CLD_DUMPED the signal."""
        if si_code == os.CLD_EXITED:
            return cls.exited(si_status)
        if si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            return cls.killed(si_status)
        raise ValueError(f"expected si_code CLD_EXITED, CLD_KILLED or CLD_DUMPED, got {si_code}")

    def because(self, reason: str) -> ExitStatus:
        """The same end, explained by something supd knows better (e.g. "oom-kill")."""
        return ExitStatus(code=self.code, signal=self.signal, reason=reason)

    @property
    def clean(self) -> bool:
        if self.reason in FAILURE_REASONS:
            return False
        if self.code is not None:
            return self.code == 0
        return self.signal in CLEAN_SIGNALS

    @property
    def abnormal(self) -> bool:
        """systemd's on-abnormal: an unclean signal, a timeout, a watchdog (health) or OOM kill."""
        if self.reason in FAILURE_REASONS:
            return True
        return self.code is None and self.signal is not None and self.signal not in CLEAN_SIGNALS


def should_restart(policy: RestartPolicy, status: ExitStatus, *, user_stop: bool = False) -> bool:
    """systemd's Restart= table; a stop the user asked for never restarts."""
    if user_stop or status.reason == USER_REASON:
        return False
    if policy == "always":
        return True
    if policy == "on-failure":
        return not status.clean
    if policy == "on-abnormal":
        return status.abnormal
    return False


def backoff_delay(spec: RestartSpec, restarts: int) -> float:
    """The wait before restart number `restarts` (0 = first): delay doubling, capped."""
    doubled = spec.delay * (2.0 ** min(max(restarts, 0), _MAX_DOUBLINGS))
    return max(0.0, min(doubled, spec.max_delay))


@dataclass(frozen=True)
class BackoffState:
    """Exponential restart backoff as a value (what `policy.lifecycle` keeps).

    `started(now)` when a process starts, `exited(spec, now)` when it ends
    (its `delay` is then the wait before the next start). A run of at least
    `reset_after` seconds starts the doubling over. A clock that went
    backwards counts as a reset and never yields negative waits.
    """

    restarts: int = 0  # consecutive restarts since the last reset
    started_at: float | None = None
    exited_at: float | None = None
    delay: float = 0.0

    def started(self, now: float) -> BackoffState:
        return BackoffState(self.restarts, now, None, self.delay)

    def exited(self, spec: RestartSpec, now: float) -> BackoffState:
        started = self.started_at
        restarts = self.restarts
        if started is None or now < started or now - started >= spec.reset_after:
            restarts = 0
        return BackoffState(restarts + 1, None, now, backoff_delay(spec, restarts))

    def remaining(self, now: float) -> float:
        if self.exited_at is None:
            return 0.0
        return min(max(self.exited_at + self.delay - now, 0.0), self.delay)


class Backoff:
    """A mutable holder of a `BackoffState` (for callers that keep one per unit)."""

    def __init__(self, spec: RestartSpec) -> None:
        self.spec = spec
        self.value = BackoffState()

    @property
    def restarts(self) -> int:
        return self.value.restarts

    def started(self, now: float) -> None:
        self.value = self.value.started(now)

    def exited(self, now: float) -> float:
        """Record the end of a run; returns the delay before the next start."""
        self.value = self.value.exited(self.spec, now)
        return self.value.delay

    def delay_for_next_start(self, now: float) -> float:
        return self.value.remaining(now)

    def reset(self) -> None:
        """Forget the history (a start the user asked for)."""
        self.value = BackoffState()
