"""What the daemon knows about one unit while it supervises it.

`UnitRun` is the daemon's mutable record of a unit (the definition is the
frozen `Unit`); it is owned by that unit's task, and commands reach the task by
flipping `want_running` and poking `wake`/`stop_requested`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from supervisor.cgroups.driver import CgroupRef
from supervisor.policy.ratelimit import StartLimit
from supervisor.policy.restart import Backoff, ExitStatus
from supervisor.policy.state import UnitState
from supervisor.units.model import Unit


@dataclass
class UnitRun:
    name: str
    file: Path
    unit: Unit | None
    error: str | None = None
    state: UnitState = UnitState.INACTIVE
    since: float = field(default_factory=time.time)
    pid: int | None = None
    cgroup: CgroupRef | None = None
    restarts: int = 0
    last_exit: ExitStatus | None = None
    want_running: bool = False
    frozen: bool = False
    freeze_reason: str | None = None
    warnings: tuple[str, ...] = ()
    started_at: float | None = None  # monotonic, for reset_after
    oom_kills_at_start: int = 0
    removed: bool = False
    health: str | None = None
    health_output: str | None = None
    backoff: Backoff | None = None
    start_limit: StartLimit | None = None
    # Poked whenever the unit's task should look at want_running again.
    wake: anyio.Event = field(default_factory=anyio.Event)
    # Set (while a process runs) to make the task stop it; the reason goes into the event.
    stop_requested: anyio.Event = field(default_factory=anyio.Event)
    stop_reason: str = "user"
    # Set by Supervisor.fail(): the stop is a failure (restart policy applies).
    fail_reason: str | None = None
    # The task is running this unit (spawn, supervise, cleanup) right now.
    active: bool = False
    # The last stop was the user's (kept across supd restarts: a stopped unit stays stopped).
    user_stopped: bool = False
    # A process left running by a previous supd, to be supervised instead of started.
    adopt_pid: int | None = None
    adopt_since: float | None = None  # when the adopted process was started (wall clock)

    def poke(self) -> None:
        self.wake.set()

    def new_wake(self) -> anyio.Event:
        self.wake = anyio.Event()
        return self.wake

    def reset_policy(self) -> None:
        """Fresh backoff and start-limit counters (a new definition, or a user start)."""
        if self.unit is None:
            self.backoff, self.start_limit = None, None
            return
        self.backoff = Backoff(self.unit.restart)
        self.start_limit = StartLimit(self.unit.restart.limit_burst, self.unit.restart.limit_interval)
