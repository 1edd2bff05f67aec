"""The start-rate limit (systemd's StartLimitBurst= / StartLimitIntervalSec=).
Pure: takes `now` (monotonic seconds).
"""

from __future__ import annotations

from collections import deque


def record_start(starts: tuple[float, ...], burst: int, interval: float, now: float) -> tuple[float, ...] | None:
    """The start stamps after a start at `now`, or None when it is over the
    limit (at most `burst` starts within any `interval` seconds; 0 = no limit)."""
    if interval == 0:
        return starts
    if starts and now < starts[-1]:
        # The clock went backwards: old stamps are meaningless and would
        # otherwise keep the unit locked out until the clock catches up.
        starts = ()
    recent = tuple(t for t in starts if now - t < interval)
    if len(recent) >= burst:
        return None
    return recent + (now,)


class StartLimit:
    """At most `burst` starts within any `interval` seconds; `interval` 0 means no limit."""

    def __init__(self, burst: int, interval: float) -> None:
        if burst < 1:
            raise ValueError(f"expected a start limit burst of at least 1, got {burst}")
        if interval < 0:
            raise ValueError(f"expected a start limit interval of at least 0 seconds, got {interval}")
        self.burst = burst
        self.interval = interval
        self._starts: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a start at `now`; False (and nothing recorded) when over the limit."""
        after = record_start(tuple(self._starts), self.burst, self.interval, now)
        if after is None:
            return False
        self._starts = deque(after)
        return True

    def reset(self) -> None:
        self._starts.clear()

    @property
    def recent_starts(self) -> int:
        return len(self._starts)
