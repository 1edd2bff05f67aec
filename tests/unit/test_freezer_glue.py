"""Freeze-policy glue without a kernel: re-arm decisions, PSI text and
trigger lines, and the host-pressure freezer's rounds against a stand-in
supervisor (its freeze/thaw only flip the record; the decisions are real)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import pytest

from supervisor.cgroups.memwatch import high_counter, v2_high_value
from supervisor.daemon.events import EventBus
from supervisor.daemon.freezer import FREEZE_SPACING, HostPressureFreezer, freeze_on_arm
from supervisor.daemon.pressure import PressureError, parse_pressure, some_avg10, trigger_line, trigger_thresholds
from supervisor.daemon.unitrun import UnitRun
from supervisor.policy.lifecycle import Life
from supervisor.policy.freeze import THAW_AFTER
from supervisor.policy.state import UnitState
from supervisor.units.model import ExecSpec, FreezeSpec, Unit, UnitSection

PSI = "some avg10=12.50 avg60=3.00 avg300=0.50 total=123456\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=42\n"


def test_freeze_on_arm() -> None:
    assert freeze_on_arm(usage=100, threshold=90, overridden_threshold=None)
    assert not freeze_on_arm(usage=80, threshold=90, overridden_threshold=None)
    # the operator thawed at this threshold: wait for a new crossing instead
    assert not freeze_on_arm(usage=100, threshold=90, overridden_threshold=90)
    # a different (new) threshold is armed fresh
    assert freeze_on_arm(usage=200, threshold=180, overridden_threshold=90)


def test_memory_events_and_v2_high() -> None:
    assert high_counter("low 0\nhigh 17\nmax 2\noom 0\noom_kill 0\n") == 17
    assert high_counter("") == 0
    assert v2_high_value(900, None) == 900
    assert v2_high_value(900, 500) == 500  # the unit's own lower high stays
    assert v2_high_value(900, 1000) == 900


def test_parse_pressure() -> None:
    parsed = parse_pressure(PSI)
    assert parsed["some"]["avg10"] == 12.5 and parsed["full"]["total"] == 42
    assert some_avg10(PSI) == 12.5
    with pytest.raises(PressureError, match='expected a "some avg10=<percent>" line') as e:
        some_avg10("full avg10=1.00\n", "/proc/pressure/x")
    assert e.value.path == "/proc/pressure/x"


@pytest.mark.parametrize(
    ("percent", "line"),
    [(40.0, "some 800000 2000000"), (100.0, "some 1999999 2000000"), (0.00001, "some 1 2000000")],
)
def test_trigger_line(percent: float, line: str) -> None:
    assert trigger_line(percent) == line


def test_trigger_line_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"expected a threshold in \(0, 100\]"):
        trigger_line(0)


def test_trigger_thresholds_take_the_lowest() -> None:
    got = trigger_thresholds({"a": {"memory": 40.0}, "b": {"memory": 20.0, "io": 50.0}, "c": {}})
    assert got == {"memory": 20.0, "io": 50.0}


# --- the host-pressure freezer's rounds


@dataclass
class FakeHost:
    values: dict[str, float] = field(default_factory=dict)

    def available(self, resource: str) -> bool:
        return True

    def readings(self, resources: list[str]) -> dict[str, float]:
        return {r: self.values[r] for r in resources if r in self.values}


class StandInSupervisor:
    """Only what the freezer touches; freeze/thaw flip the record like the real one."""

    def __init__(self) -> None:
        self.units: dict[str, UnitRun] = {}
        self.events = EventBus()
        self.actions: list[tuple[str, str, str]] = []

    def add(self, name: str, priority: int, pressure: dict[str, float] | None) -> UnitRun:
        unit = Unit(
            name=name,
            file=Path(f"/u/{name}.toml"),
            exec=ExecSpec(command=("/bin/true",)),
            unit=UnitSection(priority=priority),
            freeze=FreezeSpec(on_host_pressure=tuple((pressure or {}).items())) if pressure else None,
        )
        life = Life(state=UnitState.RUNNING, reason="started", spec=unit.restart, has_process=True)
        u = UnitRun(name=name, file=unit.file, unit=unit, life=life, pid=1000 + len(self.units))
        self.units[name] = u
        return u

    async def freeze(self, u: UnitRun, reason: str = "user") -> None:
        u.frozen, u.life = True, replace(u.life, state=UnitState.FROZEN, freeze_reason=reason)
        self.actions.append(("freeze", u.name, reason))

    async def thaw(self, u: UnitRun, reason: str = "user") -> None:
        u.frozen, u.life = False, replace(u.life, state=UnitState.RUNNING, freeze_reason=None)
        self.actions.append(("thaw", u.name, reason))

    async def wait_changed(self) -> None:
        await anyio.sleep_forever()


def make() -> tuple[StandInSupervisor, FakeHost, HostPressureFreezer]:
    sup = StandInSupervisor()
    host = FakeHost()
    return sup, host, HostPressureFreezer(sup, host)  # type: ignore[arg-type]


def run(coro_fn, *args):  # type: ignore[no-untyped-def]
    return anyio.run(coro_fn, *args)


def test_freezes_lowest_priority_first_one_at_a_time() -> None:
    sup, host, f = make()
    sup.add("web", priority=10, pressure={"memory": 40.0})
    sup.add("batch", priority=-5, pressure={"memory": 40.0})
    sup.add("plain", priority=-100, pressure=None)
    host.values = {"memory": 55.0}
    run(f.evaluate, 100.0)
    assert sup.actions == [("freeze", "batch", "pressure")]
    run(f.evaluate, 100.0 + FREEZE_SPACING / 2)  # too soon after the last freeze
    assert len(sup.actions) == 1
    run(f.evaluate, 100.0 + FREEZE_SPACING)  # still over: the next one
    assert sup.actions[-1] == ("freeze", "web", "pressure")
    ev = [e for e in sup.events.recent(10) if e["event"] == "host-pressure"]
    assert ev[0]["unit"] == "batch" and ev[0]["readings"] == {"memory": 55.0} and ev[0]["priority"] == -5


def test_no_freeze_below_threshold_and_per_resource() -> None:
    sup, host, f = make()
    sup.add("io-heavy", priority=0, pressure={"io": 30.0})
    host.values = {"memory": 90.0, "io": 29.9}
    run(f.evaluate, 1.0)
    assert sup.actions == []


def test_thaws_after_ten_seconds_below_half() -> None:
    sup, host, f = make()
    sup.add("batch", priority=0, pressure={"memory": 40.0})
    host.values = {"memory": 50.0}
    run(f.evaluate, 100.0)
    host.values = {"memory": 25.0}  # below the threshold, not below half: stays frozen
    run(f.evaluate, 105.0)
    run(f.evaluate, 130.0)
    assert sup.actions == [("freeze", "batch", "pressure")]
    host.values = {"memory": 19.0}
    run(f.evaluate, 131.0)
    run(f.evaluate, 131.0 + THAW_AFTER - 0.5)
    assert len(sup.actions) == 1
    host.values = {"memory": 21.0}  # rises again: the clock restarts
    run(f.evaluate, 141.5)
    host.values = {"memory": 10.0}
    run(f.evaluate, 142.0)
    run(f.evaluate, 142.0 + THAW_AFTER - 0.1)
    assert len(sup.actions) == 1
    run(f.evaluate, 142.0 + THAW_AFTER)
    assert sup.actions[-1] == ("thaw", "batch", "pressure")
    assert sup.units["batch"].state == UnitState.RUNNING


def test_user_freeze_is_never_thawed_by_policy() -> None:
    sup, host, f = make()
    u = sup.add("batch", priority=0, pressure={"memory": 40.0})
    run(sup.freeze, u, "user")
    host.values = {"memory": 80.0}
    run(f.evaluate, 1.0)
    host.values = {"memory": 0.0}
    for now in (2.0, 20.0, 40.0):
        run(f.evaluate, now)
    assert sup.actions == [("freeze", "batch", "user")]
    assert u.freeze_reason == "user"


def test_user_thaw_holds_for_the_episode() -> None:
    sup, host, f = make()
    u = sup.add("batch", priority=0, pressure={"memory": 40.0})
    host.values = {"memory": 60.0}
    run(f.evaluate, 10.0)
    run(sup.thaw, u, "user")  # the operator wants it running despite pressure
    run(f.evaluate, 20.0)
    run(f.evaluate, 30.0)
    assert [a for a in sup.actions if a[0] == "freeze"] == [("freeze", "batch", "pressure")]
    assert any(e["event"] == "pressure-override" for e in sup.events.recent(20))
    # the episode ends (everything below half), then a new one freezes again
    host.values = {"memory": 5.0}
    run(f.evaluate, 40.0)
    host.values = {"memory": 70.0}
    run(f.evaluate, 50.0)
    assert sup.actions[-1] == ("freeze", "batch", "pressure")


def test_restarted_unit_is_not_a_user_thaw() -> None:
    sup, host, f = make()
    u = sup.add("batch", priority=0, pressure={"memory": 40.0})
    host.values = {"memory": 60.0}
    run(f.evaluate, 10.0)
    # max-frozen failed it and it came back as a new process
    u.frozen, u.pid = False, 4242
    u.life = replace(u.life, state=UnitState.RUNNING, freeze_reason=None)
    run(f.evaluate, 20.0)
    assert f.user_thawed == set()
    assert sup.actions[-1] == ("freeze", "batch", "pressure")
