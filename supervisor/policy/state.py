"""The unit state machine: which state may follow which, and guards the
daemon asks before acting on a command (a `False` means HTTP 409). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType


class UnitState(str, Enum):
    INACTIVE = "inactive"  # loaded, not running (never started, or stopped by the user)
    STARTING = "starting"  # rootfs, cgroup and process being set up
    RUNNING = "running"
    STOPPING = "stopping"  # stop signal sent, waiting for the cgroup to empty
    FROZEN = "frozen"
    RESTARTING = "restarting"  # waiting out a backoff delay before the next start
    EXITED = "exited"  # ended and not restarted by policy
    FAILED = "failed"  # start limit hit, or could not start
    ERROR = "error"  # the unit file is invalid

    def __str__(self) -> str:
        return self.value


S = UnitState

# Where a unit can go from each state; policy.lifecycle.step enforces it.
# A unit whose file turns invalid while it runs is stopped first, so ERROR is
# entered only from states with no process (or from STOPPING, on the way
# out). Taking over after a supd restart or reboot is not a move along this
# table (see lifecycle.Adopted, Resumed).
TRANSITIONS: Mapping[UnitState, frozenset[UnitState]] = MappingProxyType(
    {
        S.INACTIVE: frozenset({S.STARTING, S.ERROR, S.FAILED}),
        S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.FAILED, S.INACTIVE, S.ERROR}),
        S.RUNNING: frozenset({S.STOPPING, S.FROZEN, S.EXITED, S.FAILED, S.RESTARTING}),
        S.STOPPING: frozenset({S.INACTIVE, S.EXITED, S.FAILED, S.ERROR, S.RESTARTING}),
        S.FROZEN: frozenset({S.RUNNING, S.STOPPING, S.EXITED, S.FAILED, S.RESTARTING}),
        S.RESTARTING: frozenset({S.STARTING, S.INACTIVE, S.FAILED, S.ERROR}),
        S.EXITED: frozenset({S.STARTING, S.ERROR, S.INACTIVE, S.FAILED}),
        S.FAILED: frozenset({S.ERROR, S.INACTIVE}),
        S.ERROR: frozenset({S.INACTIVE, S.ERROR}),
    }
)

# A process (or a cgroup with processes) exists in these states.
ACTIVE_STATES = frozenset({S.STARTING, S.RUNNING, S.STOPPING, S.FROZEN})


def can_transition(current: UnitState, new: UnitState) -> bool:
    return new in TRANSITIONS[current]


def is_active(state: UnitState) -> bool:
    return state in ACTIVE_STATES


def can_start(state: UnitState) -> bool:
    """A start command makes sense: nothing runs and the file is valid.

    RESTARTING counts: starting now just skips the rest of the backoff.
    FAILED counts: a user start is its way out (through INACTIVE).
    """
    return state in (S.INACTIVE, S.RESTARTING, S.EXITED, S.FAILED)


def can_stop(state: UnitState) -> bool:
    """There is something to stop: a process, or a pending restart."""
    return state in (S.STARTING, S.RUNNING, S.FROZEN, S.RESTARTING)


def can_restart(state: UnitState) -> bool:
    """Restart = stop if needed, then start; refused only for invalid files and
    units already on their way down."""
    return state not in (S.ERROR, S.STOPPING)


def can_freeze(state: UnitState) -> bool:
    return state is S.RUNNING


def can_thaw(state: UnitState) -> bool:
    return state is S.FROZEN
