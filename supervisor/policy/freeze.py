"""When to freeze and thaw units: near their memory limit, under host
pressure (PSI "some avg10"), and when a freeze has lasted too long. Pure:
takes `now` (monotonic seconds) and readings the shell made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, Literal

PressureAction = Literal["freeze", "thaw"]

# Thaw once pressure has stayed below half its threshold for this long, so a
# unit does not flap between frozen and running on a noisy reading.
THAW_BELOW_FRACTION: Final = 0.5
THAW_AFTER: Final = 10.0


def _pairs(thresholds: Mapping[str, float] | Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    return list(thresholds.items()) if isinstance(thresholds, Mapping) else list(thresholds)


def over_threshold(
    thresholds: Mapping[str, float] | Iterable[tuple[str, float]], avg10_by_resource: Mapping[str, float]
) -> bool:
    """Some resource's pressure is at or above its threshold (unknown readings don't count)."""
    return any(
        resource in avg10_by_resource and avg10_by_resource[resource] >= limit
        for resource, limit in _pairs(thresholds)
    )


def all_below_half(
    thresholds: Mapping[str, float] | Iterable[tuple[str, float]], avg10_by_resource: Mapping[str, float]
) -> bool:
    """Every resource with a reading is below half its threshold."""
    return all(
        avg10_by_resource[resource] < limit * THAW_BELOW_FRACTION
        for resource, limit in _pairs(thresholds)
        if resource in avg10_by_resource
    )


def next_below_since(
    thresholds: Mapping[str, float] | Iterable[tuple[str, float]],
    avg10_by_resource: Mapping[str, float],
    below_since: float | None,
    now: float,
) -> float | None:
    """Track since when pressure has been low: keep the stamp while it stays low,
    start one when it becomes low, drop it when it rises. A stamp in the future
    (clock went backwards) restarts at `now`."""
    if not all_below_half(thresholds, avg10_by_resource):
        return None
    if below_since is None or below_since > now:
        return now
    return below_since


def host_pressure_action(
    thresholds: Mapping[str, float] | Iterable[tuple[str, float]],
    avg10_by_resource: Mapping[str, float],
    frozen_since: float | None,
    below_since: float | None,
    now: float,
) -> PressureAction | None:
    """"freeze" a running unit at/above a threshold; "thaw" a pressure-frozen unit
    once every reading has been below half its threshold for `THAW_AFTER`
    seconds (`below_since` from `next_below_since`); else None."""
    pairs = _pairs(thresholds)
    if not pairs:
        return None
    if frozen_since is None:
        return "freeze" if over_threshold(pairs, avg10_by_resource) else None
    if below_since is None or not all_below_half(pairs, avg10_by_resource):
        return None
    if now < below_since:
        return None
    return "thaw" if now - below_since >= THAW_AFTER else None


def freeze_order(units_with_priority: Mapping[str, int] | Iterable[tuple[str, int]]) -> list[str]:
    """Unit names in the order to freeze them: lowest priority first, then by name."""
    pairs = units_with_priority.items() if isinstance(units_with_priority, Mapping) else units_with_priority
    return [name for name, _priority in sorted(pairs, key=lambda pair: (pair[1], pair[0]))]


def memory_threshold(memory_max: int, near: float) -> int:
    """Bytes of memory.current at which to freeze: `near` of `memory_max`, at least 1."""
    if memory_max < 1 or not 0 < near <= 1:
        raise ValueError(f"expected memory_max >= 1 and near in (0, 1], got {memory_max} and {near}")
    return max(1, min(memory_max, math.floor(memory_max * near)))


def near_memory_max(memory_current: int, memory_max: int, near: float) -> bool:
    return memory_current >= memory_threshold(memory_max, near)


def max_frozen_exceeded(frozen_since: float | None, max_frozen: float | None, now: float) -> bool:
    """A frozen unit has been frozen for `max_frozen` seconds (never on a clock rollback)."""
    if frozen_since is None or max_frozen is None or now < frozen_since:
        return False
    return now - frozen_since >= max_frozen
