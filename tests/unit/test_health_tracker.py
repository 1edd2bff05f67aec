"""Health-check glue without a kernel: the verdict counter, the output tail,
how results are described, and finding a check's process tree in a /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.daemon.health import CheckResult, HealthTracker, OutputTail, descendants
from supervisor.units.model import HealthSpec

SPEC = HealthSpec(command=("/bin/true",), interval=1.0, timeout=2.0, retries=3, start_period=10.0)


def test_success_makes_healthy_once() -> None:
    t = HealthTracker(SPEC, started=100.0)
    assert t.status == "starting"
    assert t.record(True, now=101.0) == "healthy"
    assert t.record(True, now=102.0) is None  # no change, no event


def test_failures_in_start_period_do_not_count() -> None:
    t = HealthTracker(SPEC, started=100.0)
    for now in (101.0, 103.0, 105.0, 109.9):
        assert t.record(False, now) is None
    assert t.failures == 0 and t.status == "starting"
    # after the start period, `retries` consecutive failures → unhealthy
    assert t.record(False, 110.0) is None
    assert t.record(False, 111.0) is None
    assert t.record(False, 112.0) == "unhealthy"
    assert t.record(False, 113.0) is None  # stays unhealthy, one event


def test_a_success_resets_the_count() -> None:
    t = HealthTracker(SPEC, started=0.0)
    t.record(False, 20.0)
    t.record(False, 21.0)
    assert t.record(True, 22.0) == "healthy"
    t.record(False, 23.0)
    t.record(False, 24.0)
    assert t.status == "healthy"
    assert t.record(False, 25.0) == "unhealthy"
    assert t.record(True, 26.0) == "healthy"


def test_success_in_start_period_counts() -> None:
    assert HealthTracker(SPEC, started=100.0).record(True, 100.5) == "healthy"


def test_zero_retries_means_first_failure() -> None:
    spec = HealthSpec(command=("x",), retries=0)
    assert HealthTracker(spec, started=0.0).record(False, 1.0) == "unhealthy"


def test_clock_before_start_is_not_the_start_period() -> None:
    t = HealthTracker(HealthSpec(command=("x",), retries=1, start_period=10.0), started=100.0)
    assert not t.in_start_period(50.0)
    assert t.record(False, 50.0) == "unhealthy"


def test_reset_keeps_verdict_and_clears_count() -> None:
    t = HealthTracker(SPEC, started=0.0)
    t.record(False, 20.0)
    t.record(False, 21.0)
    t.reset()
    assert t.failures == 0
    assert t.record(False, 22.0) is None


def test_output_tail_keeps_the_last_bytes() -> None:
    tail = OutputTail(limit=8)
    tail.add(b"hello ")
    tail.add(b"world!")
    assert tail.text() == "o world!"
    big = OutputTail()
    big.add(b"a" * 10000 + b"END")
    assert len(big.data) == 4096 and big.text().endswith("END")
    bad = OutputTail()
    bad.add(b"\xff ok")
    assert bad.text() == "\ufffd ok"


@pytest.mark.parametrize(
    ("result", "text", "ok"),
    [
        (CheckResult(code=0), "exit 0", True),
        (CheckResult(code=1), "exit 1", False),
        (CheckResult(code=None, signal=9), "signal SIGKILL", False),
        (CheckResult(code=None, timed_out=True), "timeout after 2s", False),
        (CheckResult(code=None, error="exec /x: No such file or directory"), "exec /x: No such file or directory", False),
    ],
)
def test_check_result(result: CheckResult, text: str, ok: bool) -> None:
    assert result.describe(2.0) == text
    assert result.ok is ok


def fake_proc(root: Path, tree: dict[int, dict[int, list[int]]]) -> Path:
    """pid → {tid: [children]} as /proc/<pid>/task/<tid>/children files."""
    for pid, tasks in tree.items():
        for tid, children in tasks.items():
            d = root / str(pid) / "task" / str(tid)
            d.mkdir(parents=True)
            (d / "children").write_text(" ".join(map(str, children)) + (" " if children else ""))
    return root


def test_descendants_walks_every_thread_parents_first(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            10: {10: [11], 12: [13]},  # the relay; a thread of it forked 13
            11: {11: [14]},
            13: {13: []},
            14: {14: []},
            99: {99: [100]},  # not ours
        },
    )
    assert descendants(10, proc) == [11, 13, 14]
    assert descendants(14, proc) == []
    assert descendants(12345, proc) == []  # gone already
