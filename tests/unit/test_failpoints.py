"""supervisor.failpoints: the SUPD_FAILPOINTS syntax and what an armed point does."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import anyio
import pytest

from supervisor import failpoints as fp


@pytest.fixture(autouse=True)
def disarm() -> Iterator[None]:
    yield
    fp.arm("")


def test_parse_actions_counts_and_delays() -> None:
    points = fp.parse("driver.create=raise; spawn@web=2*panic;rootfs.mount=delay(1.5s);state.save=delay(20ms);log.rotate=off")
    assert points["driver.create"] == fp.Failpoint("raise", 0.0, None)
    assert points["spawn@web"] == fp.Failpoint("panic", 0.0, 2)
    assert points["rootfs.mount"].delay == 1.5 and points["state.save"].delay == pytest.approx(0.02)
    assert points["log.rotate"].action == "off"
    assert fp.parse("") == {} and fp.parse(" ; ") == {}


@pytest.mark.parametrize("bad", ["driver.create", "=raise", "x=explode", "x=delay(2h)", "x=-1*raise"])
def test_malformed_entries_are_refused_with_the_syntax(bad: str) -> None:
    with pytest.raises(fp.FailpointSpecError, match=r"SUPD_FAILPOINTS: .*expected NAME\[@UNIT\]="):
        fp.parse(bad)


def test_raise_is_an_oserror_panic_is_a_bug_and_counts_run_out() -> None:
    fp.arm("spawn=1*raise;driver.kill=panic")
    with pytest.raises(OSError) as info:
        fp.hit("spawn")
    assert info.value.errno == errno.EIO and "failpoint spawn" in str(info.value)
    fp.hit("spawn")  # fired once: off now
    with pytest.raises(RuntimeError, match="failpoint driver.kill"):
        fp.hit("driver.kill")


def test_a_unit_point_wins_and_others_are_untouched() -> None:
    fp.arm("driver.create@web=raise")
    fp.hit("driver.create", "db")
    fp.hit("driver.create")
    with pytest.raises(fp.FailpointError):
        fp.hit("driver.create", "web")


def test_async_delay_and_unset_costs_nothing() -> None:
    fp.arm("driver.remove=delay(50ms)")

    async def main() -> float:
        t0 = anyio.current_time()
        await fp.ahit("driver.remove")
        await fp.ahit("driver.update")
        return anyio.current_time() - t0

    assert anyio.run(main) >= 0.045
    fp.arm("")
    assert fp._armed == {}
    fp.hit("driver.create")


def test_every_documented_point_is_named_in_the_module_doc() -> None:
    for name in fp.POINTS:
        assert name in (fp.__doc__ or "")
