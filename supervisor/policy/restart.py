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


class Backoff:
    """Exponential restart backoff for one unit.

    Call `started(now)` when a process starts and `exited(now)` when it ends;
    `delay_for_next_start(now)` is what is left to wait before the next start.
    A run of at least `reset_after` seconds starts the doubling over. A clock
    that went backwards counts as a reset and never yields negative waits.
    """

    def __init__(self, spec: RestartSpec) -> None:
        self.spec = spec
        self.restarts = 0  # consecutive restarts since the last reset
        self._started_at: float | None = None
        self._exited_at: float | None = None
        self._delay = 0.0

    def started(self, now: float) -> None:
        self._started_at = now
        self._exited_at = None

    def exited(self, now: float) -> float:
        """Record the end of a run; returns the delay before the next start."""
        started = self._started_at
        if started is None or now < started or now - started >= self.spec.reset_after:
            self.restarts = 0
        self._delay = backoff_delay(self.spec, self.restarts)
        self.restarts += 1
        self._started_at = None
        self._exited_at = now
        return self._delay

    def delay_for_next_start(self, now: float) -> float:
        if self._exited_at is None:
            return 0.0
        remaining = self._exited_at + self._delay - now
        return min(max(remaining, 0.0), self._delay)

    def reset(self) -> None:
        """Forget the history (a start the user asked for)."""
        self.restarts = 0
        self._started_at = None
        self._exited_at = None
        self._delay = 0.0
