"""The unit state machine and the guards behind HTTP 409."""

from __future__ import annotations

import pytest

from supervisor.policy.state import (
    TRANSITIONS,
    UnitState,
    can_freeze,
    can_restart,
    can_start,
    can_stop,
    can_thaw,
    can_transition,
    is_active,
)

S = UnitState


def test_values_are_the_designed_names() -> None:
    assert [s.value for s in UnitState] == [
        "inactive", "starting", "running", "stopping", "frozen", "restarting", "exited", "failed", "error",
    ]  # fmt: skip
    assert UnitState("running") is S.RUNNING and str(S.FROZEN) == "frozen" and S.FAILED == "failed"


def test_every_state_has_a_row_and_every_state_is_reachable() -> None:
    assert set(TRANSITIONS) == set(UnitState)
    reachable = {S.INACTIVE}
    frontier = [S.INACTIVE]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(UnitState)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.INACTIVE, S.STARTING), (S.STARTING, S.RUNNING), (S.RUNNING, S.FROZEN), (S.FROZEN, S.RUNNING),
        (S.RUNNING, S.RESTARTING), (S.RESTARTING, S.STARTING), (S.RUNNING, S.STOPPING), (S.STOPPING, S.INACTIVE),
        (S.RUNNING, S.EXITED), (S.RESTARTING, S.FAILED), (S.FAILED, S.INACTIVE), (S.ERROR, S.INACTIVE),
    ],
)  # fmt: skip
def test_allowed(a: UnitState, b: UnitState) -> None:
    assert can_transition(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.INACTIVE, S.RUNNING), (S.INACTIVE, S.FROZEN), (S.EXITED, S.FROZEN), (S.FROZEN, S.FROZEN),
        (S.RUNNING, S.RUNNING), (S.RUNNING, S.ERROR), (S.ERROR, S.RUNNING), (S.STOPPING, S.RUNNING),
        (S.FAILED, S.RUNNING), (S.RESTARTING, S.RUNNING),
    ],
)  # fmt: skip
def test_refused(a: UnitState, b: UnitState) -> None:
    assert not can_transition(a, b)


GUARDS = {
    # state: (start, stop, restart, freeze, thaw)
    S.INACTIVE: (True, False, True, False, False),
    S.STARTING: (False, True, True, False, False),
    S.RUNNING: (False, True, True, True, False),
    S.STOPPING: (False, False, False, False, False),
    S.FROZEN: (False, True, True, False, True),
    S.RESTARTING: (True, True, True, False, False),
    S.EXITED: (True, False, True, False, False),
    S.FAILED: (True, False, True, False, False),
    S.ERROR: (False, False, False, False, False),
}


@pytest.mark.parametrize("state", list(UnitState))
def test_guards(state: UnitState) -> None:
    got = (can_start(state), can_stop(state), can_restart(state), can_freeze(state), can_thaw(state))
    assert got == GUARDS[state]


def test_guards_agree_with_the_table() -> None:
    for state in UnitState:
        if can_start(state):
            # failed is left through inactive (a user start resets it first)
            assert can_transition(state, S.STARTING) or can_transition(state, S.INACTIVE)
        if can_freeze(state):
            assert can_transition(state, S.FROZEN)
        if can_thaw(state):
            assert can_transition(state, S.RUNNING)
        if can_stop(state) and state is not S.RESTARTING:
            assert can_transition(state, S.STOPPING)


def test_active_states() -> None:
    assert {s for s in UnitState if is_active(s)} == {S.STARTING, S.RUNNING, S.STOPPING, S.FROZEN}
