"""The start-rate limit (systemd's StartLimitBurst= / StartLimitIntervalSec=).
Pure: takes `now` (monotonic seconds).
"""

from __future__ import annotations

from collections import deque


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
        if self.interval == 0:
            return True
        if self._starts and now < self._starts[-1]:
            # The clock went backwards: old stamps are meaningless and would
            # otherwise keep the unit locked out until the clock catches up.
            self._starts.clear()
        while self._starts and now - self._starts[0] >= self.interval:
            self._starts.popleft()
        if len(self._starts) >= self.burst:
            return False
        self._starts.append(now)
        return True

    def reset(self) -> None:
        self._starts.clear()

    @property
    def recent_starts(self) -> int:
        return len(self._starts)
