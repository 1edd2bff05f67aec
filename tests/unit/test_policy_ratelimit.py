"""The start-rate limit: more than `burst` starts within `interval` are refused."""

from __future__ import annotations

import pytest

from supervisor.policy.ratelimit import StartLimit


def test_burst_starts_pass_then_refused() -> None:
    limit = StartLimit(burst=3, interval=10.0)
    assert [limit.allow(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [True, True, True, False, False]
    assert limit.recent_starts == 3  # refused starts are not recorded


def test_window_slides() -> None:
    limit = StartLimit(burst=2, interval=10.0)
    assert limit.allow(0.0) and limit.allow(5.0)
    assert not limit.allow(9.9)
    assert limit.allow(10.0)  # the start at 0.0 left the window
    assert not limit.allow(14.9)
    assert limit.allow(15.0)


def test_reset_allows_again() -> None:
    limit = StartLimit(burst=1, interval=60.0)
    assert limit.allow(0.0) and not limit.allow(1.0)
    limit.reset()
    assert limit.allow(2.0)


def test_interval_zero_means_no_limit() -> None:
    limit = StartLimit(burst=1, interval=0.0)
    assert all(limit.allow(float(t)) for t in range(100))


def test_clock_rollback_does_not_lock_the_unit_out() -> None:
    limit = StartLimit(burst=2, interval=60.0)
    assert limit.allow(1000.0) and limit.allow(1001.0)
    assert not limit.allow(1002.0)
    assert limit.allow(5.0)  # clock went back: history dropped rather than a lockout until t=1060
    assert limit.allow(6.0) and not limit.allow(7.0)  # and the limit still holds afterwards


@pytest.mark.parametrize(("burst", "interval"), [(0, 10.0), (1, -1.0)])
def test_bad_arguments(burst: int, interval: float) -> None:
    with pytest.raises(ValueError, match="expected a start limit"):
        StartLimit(burst, interval)
