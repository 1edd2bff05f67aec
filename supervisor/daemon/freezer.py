"""Freeze instead of kill: the `[freeze]` policies, wired to the kernel.

- `near_memory_max_watcher` (one per running unit): a memory threshold at
  `near_memory_max × memory_max` (cgroups.memwatch); when usage crosses it the
  unit is frozen (reason "memory") before the OOM killer acts. It re-arms
  when the unit is thawed, at the threshold of the limit in force then (an
  operator raises memory_max in the unit file — applied live — and thaws).
  A thaw with the same limit while usage is still over the threshold is the
  operator's override: the watch waits for usage to cross upwards again.
- `max_frozen_watcher` (one per running unit): frozen by a policy (anything
  but a user freeze) for longer than `max_frozen` → `Supervisor.fail(u,
  "max-frozen")`, and the [restart] policy decides.
- `HostPressureFreezer` (one for the daemon): PSI triggers on the resources
  units name in `on_host_pressure`; on a wake-up it reads `some avg10` and
  freezes, lowest priority first and one unit at a time (re-reading pressure
  between, at least `FREEZE_SPACING` apart), the units whose threshold is
  reached; it thaws them when every reading stayed below half the threshold
  for 10 s (policy.freeze). Only while it holds a unit frozen does it sample
  (every `SAMPLE_INTERVAL`), since the trigger says nothing about pressure
  going away.

User commands win over pressure policy: a unit the user froze is never thawed
by it (its reason is "user", not "pressure"), and a unit the user thawed while
pressure-frozen is left alone for the rest of that pressure episode (until
every reading is below half of every threshold again).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import anyio
import structlog

from supervisor.cgroups.driver import CgroupError
from supervisor.cgroups.memwatch import MemoryWatchError, open_memory_watch
from supervisor.daemon.pressure import HostPressure, PressureError, PsiTrigger, trigger_thresholds
from supervisor.policy.freeze import (
    all_below_half,
    freeze_order,
    host_pressure_action,
    max_frozen_exceeded,
    memory_threshold,
    next_below_since,
)
from supervisor.daemon.supervisor import StartFailure
from supervisor.policy.state import UnitState
from supervisor.units.model import Unit

if TYPE_CHECKING:
    from supervisor.daemon.supervisor import Supervisor
    from supervisor.daemon.unitrun import UnitRun

log = structlog.get_logger()

MEMORY_REASON: Final = "memory"
PRESSURE_REASON: Final = "pressure"
MAX_FROZEN_REASON: Final = "max-frozen"
USER_REASON: Final = "user"
# While units are frozen by pressure, re-read avg10 this often (to thaw).
SAMPLE_INTERVAL: Final = 1.0
# avg10 lags the real stall: give the last freeze time to show before the next.
FREEZE_SPACING: Final = 2.0


def _freeze_failed(u: UnitRun, reason: str, e: Exception) -> None:
    log.warning("policy_freeze_failed", unit=u.name, reason=reason, error=str(e))


# ------------------------------------------------------------ near memory max


def freeze_on_arm(usage: int, threshold: int, overridden_threshold: int | None) -> bool:
    """Freeze right after (re-)arming? Yes when usage is already over the
    threshold, unless the operator thawed the unit at this very threshold."""
    return usage >= threshold and threshold != overridden_threshold


def _near_memory_settings(u: UnitRun) -> tuple[int, float, int | None] | None:
    """(memory_max, near, memory_high) of the definition in force now (it can change live)."""
    unit = u.unit
    if unit is None or unit.freeze is None or unit.freeze.near_memory_max is None:
        return None
    if unit.resources.memory_max is None:
        return None
    return unit.resources.memory_max, unit.freeze.near_memory_max, unit.resources.memory_high


async def _wait_thawed(sup: Supervisor, u: UnitRun) -> None:
    while u.frozen:
        await sup.wait_changed()


async def near_memory_max_watcher(sup: Supervisor, u: UnitRun, unit: Unit) -> None:
    if unit.freeze is None or unit.freeze.near_memory_max is None or unit.resources.memory_max is None:
        return
    overridden: int | None = None  # the threshold the operator thawed us at
    while u.cgroup is not None:
        if u.frozen:
            await _wait_thawed(sup, u)
        settings = _near_memory_settings(u)
        if settings is None:
            return  # memory_max or the policy went away live; a restart brings it back
        limit, near, high = settings
        threshold = memory_threshold(limit, near)
        try:
            watch = open_memory_watch(u.cgroup, threshold, high)
        except MemoryWatchError as e:
            log.warning("near_memory_max_unavailable", unit=u.name, error=str(e))
            return
        log.info("near_memory_max_armed", unit=u.name, threshold=threshold, limit=limit)
        try:
            usage = watch.usage()
            above = usage >= threshold
            crossed = freeze_on_arm(usage, threshold, overridden)
            while not crossed:
                await watch.wait()
                if _near_memory_settings(u) != settings:
                    break  # the limit changed live: re-arm at the new threshold
                usage = watch.usage()
                crossed = usage >= threshold and not above
                above = usage >= threshold
        except OSError as e:
            log.info("near_memory_max_stopped", unit=u.name, error=str(e))
            return
        finally:
            watch.close()
        if not crossed:
            overridden = None
            continue
        if u.frozen or u.state != UnitState.RUNNING:
            continue  # frozen by something else meanwhile: look again once thawed
        sup.events.emit(u.name, "near-memory-max", MEMORY_REASON, usage=usage, threshold=threshold, limit=limit, near=near)
        try:
            await sup.freeze(u, MEMORY_REASON)
        except (CgroupError, OSError, StartFailure) as e:
            _freeze_failed(u, MEMORY_REASON, e)
            return
        await _wait_thawed(sup, u)
        # Thawed with the limit unchanged: the operator accepts the risk at this threshold.
        now_settings = _near_memory_settings(u)
        overridden = threshold if now_settings == settings else None


# ---------------------------------------------------------------- max frozen


async def max_frozen_watcher(sup: Supervisor, u: UnitRun, unit: Unit) -> None:
    if unit.freeze is None or unit.freeze.max_frozen is None:
        return
    frozen_since: float | None = None
    while True:
        u_max = u.unit.freeze.max_frozen if u.unit is not None and u.unit.freeze is not None else None
        by_policy = u.frozen and u.freeze_reason not in (None, USER_REASON)
        if not by_policy:
            frozen_since = None
            await sup.wait_changed()
            continue
        now = time.monotonic()
        if frozen_since is None:
            frozen_since = now
        if max_frozen_exceeded(frozen_since, u_max, now):
            sup.events.emit(
                u.name, "max-frozen", MAX_FROZEN_REASON, frozen_for=round(now - frozen_since, 3), max_frozen=u_max, freeze_reason=u.freeze_reason
            )
            await sup.fail(u, MAX_FROZEN_REASON)
            return
        remaining = (frozen_since + u_max - now) if u_max is not None else None
        with anyio.move_on_after(remaining if remaining is not None else float("inf")):
            await sup.wait_changed()


# ------------------------------------------------------------- host pressure


def unit_pressure_thresholds(unit: Unit | None) -> dict[str, float]:
    if unit is None or unit.freeze is None:
        return {}
    return dict(unit.freeze.on_host_pressure)


@dataclass
class PressureFrozen:
    pid: int | None
    since: float  # monotonic
    below_since: float | None = None


@dataclass
class HostPressureFreezer:
    sup: Supervisor
    host: HostPressure = field(default_factory=HostPressure)
    frozen: dict[str, PressureFrozen] = field(default_factory=dict)
    # Units the user thawed during the current pressure episode: left alone until it ends.
    user_thawed: set[str] = field(default_factory=set)
    last_freeze: float | None = None
    _triggers: dict[str, PsiTrigger] = field(default_factory=dict)

    # --- what the units ask for

    def wanted(self) -> dict[str, dict[str, float]]:
        """unit name → thresholds, for units that can be pressure-frozen now or are."""
        out: dict[str, dict[str, float]] = {}
        for name, u in self.sup.units.items():
            thresholds = unit_pressure_thresholds(u.unit)
            if thresholds and (u.active or name in self.frozen):
                out[name] = thresholds
        return out

    def _sync_triggers(self, wanted: Mapping[str, Mapping[str, float]]) -> None:
        lowest = {r: t for r, t in trigger_thresholds(wanted).items() if self.host.available(r)}
        for resource in list(self._triggers):
            if self._triggers[resource].threshold != lowest.get(resource):
                self._triggers.pop(resource).close()
        for resource, threshold in lowest.items():
            if resource not in self._triggers:
                try:
                    self._triggers[resource] = self.host.trigger(resource, threshold)
                except PressureError as e:
                    log.warning("pressure_trigger_unavailable", resource=resource, error=str(e))

    def close(self) -> None:
        for trigger in self._triggers.values():
            trigger.close()
        self._triggers.clear()

    # --- bookkeeping of user overrides

    def _forget_released(self) -> None:
        """Drop units no longer pressure-frozen; a user thaw starts an override."""
        for name in list(self.frozen):
            u = self.sup.units.get(name)
            record = self.frozen[name]
            if u is not None and u.frozen and u.freeze_reason == PRESSURE_REASON and u.pid == record.pid:
                continue
            del self.frozen[name]
            if u is not None and not u.frozen and u.pid == record.pid and u.state == UnitState.RUNNING:
                self.user_thawed.add(name)
                self.sup.events.emit(name, "pressure-override", USER_REASON, note="thawed by the user; not frozen again in this pressure episode")

    # --- one decision round

    async def evaluate(self, now: float) -> None:
        self._forget_released()
        wanted = self.wanted()
        resources = sorted({r for thresholds in wanted.values() for r in thresholds})
        readings = self.host.readings(resources)
        if self.user_thawed and all(all_below_half(t, readings) for t in wanted.values()):
            self.user_thawed.clear()  # the episode is over
        # Thaw whatever pressure let go of.
        for name, record in list(self.frozen.items()):
            u = self.sup.units.get(name)
            if u is None:
                del self.frozen[name]
                continue
            thresholds = wanted.get(name, {})
            record.below_since = next_below_since(thresholds, readings, record.below_since, now)
            action = host_pressure_action(thresholds, readings, record.since, record.below_since, now) if thresholds else "thaw"
            if action == "thaw":
                del self.frozen[name]
                self.sup.events.emit(
                    name, "pressure-released", PRESSURE_REASON, readings=readings, thresholds=thresholds, frozen_for=round(now - record.since, 3)
                )
                try:
                    await self.sup.thaw(u, PRESSURE_REASON)
                except (CgroupError, OSError, StartFailure) as e:
                    log.warning("policy_thaw_failed", unit=name, reason=PRESSURE_REASON, error=str(e))
        # Freeze at most one unit per round, spaced so its effect shows in avg10.
        if self.last_freeze is not None and 0 <= now - self.last_freeze < FREEZE_SPACING:
            return
        candidates: dict[str, int] = {}
        for name, thresholds in wanted.items():
            u = self.sup.units[name]
            if u.state != UnitState.RUNNING or u.frozen or name in self.user_thawed or u.unit is None:
                continue
            if host_pressure_action(thresholds, readings, None, None, now) == "freeze":
                candidates[name] = u.unit.unit.priority
        order = freeze_order(candidates)
        if not order:
            return
        name = order[0]
        u = self.sup.units[name]
        thresholds = wanted[name]
        self.sup.events.emit(
            name,
            "host-pressure",
            PRESSURE_REASON,
            readings={r: readings[r] for r in thresholds if r in readings},
            thresholds=thresholds,
            priority=candidates[name],
        )
        try:
            await self.sup.freeze(u, PRESSURE_REASON)
        except (CgroupError, OSError, StartFailure) as e:
            _freeze_failed(u, PRESSURE_REASON, e)
            return
        self.frozen[name] = PressureFrozen(pid=u.pid, since=now)
        self.last_freeze = now

    # --- the task

    async def _wait_for_news(self) -> None:
        """Until a trigger fires, the units change, or (while holding units
        frozen, or right after a freeze) the next sample is due."""
        async with anyio.create_task_group() as tg:

            async def fire(trigger: PsiTrigger) -> None:
                await trigger.wait()
                tg.cancel_scope.cancel()

            async def changed() -> None:
                await self.sup.wait_changed()
                tg.cancel_scope.cancel()

            async def sample() -> None:
                await anyio.sleep(SAMPLE_INTERVAL)
                tg.cancel_scope.cancel()

            for trigger in self._triggers.values():
                tg.start_soon(fire, trigger)
            tg.start_soon(changed)
            if self.frozen or self.user_thawed:
                tg.start_soon(sample)

    async def run(self) -> None:
        try:
            while True:
                self._sync_triggers(self.wanted())
                await self._wait_for_news()
                try:
                    await self.evaluate(time.monotonic())
                except (PressureError, CgroupError, OSError, ValueError):
                    # A bad reading must not end the policy (or the daemon).
                    log.exception("host_pressure_round_failed")
                    await anyio.sleep(SAMPLE_INTERVAL)
        finally:
            self.close()


async def host_pressure_task(sup: Supervisor, host: HostPressure | None = None) -> None:
    """The daemon-wide host-pressure freezer (start it in the daemon's task group)."""
    await HostPressureFreezer(sup, host or HostPressure()).run()
