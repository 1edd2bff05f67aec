"""Waiting for a condition in tests that drive real processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

# how much slower this machine is than the host the timeouts were sized on
# (the pure-v2 VM sets it: tests/vm/tier.py)
TIME_SCALE = float(os.environ.get("SUPD_TEST_TIME_SCALE", "1"))


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """The first true value `predicate` returns; AssertionError naming `what`
    and the last value once `timeout` (scaled) has passed."""
    timeout *= TIME_SCALE
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate} (last: {last!r})")
