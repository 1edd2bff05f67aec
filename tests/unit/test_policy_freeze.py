"""Freeze/thaw decisions: host pressure, order, memory threshold, max_frozen."""

from __future__ import annotations

import pytest

from supervisor.policy.freeze import (
    THAW_AFTER,
    freeze_order,
    host_pressure_action,
    max_frozen_exceeded,
    memory_threshold,
    near_memory_max,
    next_below_since,
)

THRESHOLDS = (("memory", 40.0), ("cpu", 80.0))


@pytest.mark.parametrize(
    ("avg10", "action"),
    [
        ({"memory": 40.0, "cpu": 0.0}, "freeze"),  # at the threshold
        ({"memory": 39.9, "cpu": 79.9}, None),
        ({"memory": 0.0, "cpu": 95.0}, "freeze"),
        ({}, None),  # no readings: never act blindly
        ({"io": 100.0}, None),  # not a watched resource
    ],
)
def test_running_unit_freezes_at_or_above_a_threshold(avg10: dict[str, float], action: str | None) -> None:
    assert host_pressure_action(THRESHOLDS, avg10, None, None, now=100.0) == action


def test_no_thresholds_no_action() -> None:
    assert host_pressure_action((), {"memory": 100.0}, None, None, now=1.0) is None


def test_frozen_unit_thaws_after_ten_seconds_below_half() -> None:
    low = {"memory": 19.9, "cpu": 10.0}
    below = next_below_since(THRESHOLDS, low, None, now=100.0)
    assert below == 100.0
    assert host_pressure_action(THRESHOLDS, low, 50.0, below, now=100.0) is None
    below = next_below_since(THRESHOLDS, low, below, now=109.9)
    assert below == 100.0
    assert host_pressure_action(THRESHOLDS, low, 50.0, below, now=109.9) is None
    assert host_pressure_action(THRESHOLDS, low, 50.0, below, now=100.0 + THAW_AFTER) == "thaw"


def test_between_half_and_threshold_stays_frozen_and_restarts_the_count() -> None:
    middle = {"memory": 25.0, "cpu": 10.0}
    assert next_below_since(THRESHOLDS, middle, 100.0, now=200.0) is None
    assert host_pressure_action(THRESHOLDS, middle, 50.0, 100.0, now=200.0) is None
    assert host_pressure_action(THRESHOLDS, {"memory": 90.0}, 50.0, None, now=200.0) is None  # already frozen


def test_below_since_in_the_future_restarts_at_now() -> None:
    low = {"memory": 1.0}
    assert next_below_since(THRESHOLDS, low, 500.0, now=100.0) == 100.0
    assert host_pressure_action(THRESHOLDS, low, 50.0, 500.0, now=100.0) is None


def test_thresholds_as_a_mapping() -> None:
    assert host_pressure_action({"io": 10.0}, {"io": 10.0}, None, None, now=0.0) == "freeze"


def test_freeze_order_lowest_priority_first_then_name() -> None:
    assert freeze_order({"web": 10, "batch": -5, "cache": 0, "api": 10}) == ["batch", "cache", "api", "web"]
    assert freeze_order([("b", 1), ("a", 1)]) == ["a", "b"]


@pytest.mark.parametrize(
    ("memory_max", "near", "bytes_"),
    [(64 << 20, 0.95, int(64 * 1024 * 1024 * 0.95)), (100, 1.0, 100), (1, 0.5, 1), (1000, 0.333, 333)],
)
def test_memory_threshold(memory_max: int, near: float, bytes_: int) -> None:
    assert memory_threshold(memory_max, near) == bytes_


@pytest.mark.parametrize(("memory_max", "near"), [(0, 0.5), (100, 0.0), (100, 1.1)])
def test_memory_threshold_refuses_nonsense(memory_max: int, near: float) -> None:
    with pytest.raises(ValueError, match="expected memory_max"):
        memory_threshold(memory_max, near)


def test_near_memory_max() -> None:
    assert near_memory_max(95, 100, 0.95) and not near_memory_max(94, 100, 0.95)


@pytest.mark.parametrize(
    ("frozen_since", "max_frozen", "now", "exceeded"),
    [
        (100.0, 600.0, 699.9, False), (100.0, 600.0, 700.0, True), (None, 600.0, 1e9, False),
        (100.0, None, 1e9, False), (100.0, 600.0, 50.0, False),  # clock went back
    ],
)  # fmt: skip
def test_max_frozen_exceeded(frozen_since: float | None, max_frozen: float | None, now: float, exceeded: bool) -> None:
    assert max_frozen_exceeded(frozen_since, max_frozen, now) is exceeded
