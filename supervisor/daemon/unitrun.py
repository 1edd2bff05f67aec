"""What the daemon knows about one unit while it supervises it.

`UnitRun` is the daemon's mutable record of a unit (the definition is the
frozen `Unit`). Its lifecycle value `life` (policy.lifecycle.Life: state,
reason, what the unit should be doing, restart history) is written only by
the unit's own task (daemon/supervisor.py), which applies
`policy.lifecycle.step`; everything else sends that task a `Command` and
awaits it. The process facts (pid, cgroup, kernel freezer) sit beside it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from supervisor.cgroups.driver import CgroupRef
from supervisor.policy import lifecycle as lc
from supervisor.policy.restart import ExitStatus
from supervisor.policy.state import UnitState
from supervisor.units.model import Unit


@dataclass(eq=False)
class Command:
    """A request to a unit's task: a lifecycle event, a new definition, or removal.
    `done` is set once the task has applied it; `error` says why it could not."""

    kind: str  # "event" | "redefine" | "remove"
    event: lc.Event | None = None
    loaded: Any = None  # unitdir.Loaded for "redefine"
    done: anyio.Event = field(default_factory=anyio.Event)
    step: lc.Step | None = None
    result: str = ""
    error: BaseException | None = None


@dataclass(eq=False)
class UnitRun:
    name: str
    file: Path
    unit: Unit | None
    life: lc.Life = field(default_factory=lc.Life)
    since: float = field(default_factory=time.time)
    pid: int | None = None
    cgroup: CgroupRef | None = None
    # The kernel freezer as supd last set it (a stop thaws before signalling).
    frozen: bool = False
    warnings: tuple[str, ...] = ()
    started_at: float | None = None  # monotonic, for health's start period
    # OOM kills: the scope's counter when the run began (a counter that moves
    # past it makes a SIGKILL an `oom-kill`), the current or last run's count
    # (final once it ended), and the count of every run before it.
    oom_kills_at_start: int = 0
    oom_kills_run: int = 0
    oom_kills_earlier: int = 0
    health: str | None = None
    health_output: str | None = None
    # Commands waiting for the unit's task, and its wake-up.
    inbox: deque[Command] = field(default_factory=deque)
    wake: anyio.Event = field(default_factory=anyio.Event)
    # Set when the unit's task has ended (the unit was removed).
    gone: anyio.Event = field(default_factory=anyio.Event)
    # A process left running by a previous supd, to be supervised instead of started.
    adopt_pid: int | None = None
    adopt_since: float | None = None  # when the adopted process was started (wall clock)
    # What a starting supd found in the unit's record: its task's first step.
    resumed: lc.Resumed | None = None
    # The id block (policy.idranges.IdMapping) its last process got, for
    # [rootfs].userns = "auto": written in its record, claimed again on adoption.
    userns: Any = None
    # Its CNI network, address and published ports (daemon/networking.Attached) while it runs.
    network: Any = None
    # The definition its process runs (or last ran): the unit file with its
    # image's config applied (units/imageconfig.py); None before a start.
    effective: Unit | None = None
    # The overlay its process was started on (rootfs.overlay.RootfsPlan): the
    # layers `image rm`/`prune` must keep while it runs, whatever its tag names now.
    rootfs_plan: Any = None
    # A new definition (or None: invalid) waiting for the running process to end.
    next_unit: tuple[Unit | None] | None = None
    # The pid of its process's log relay (runtime/spawn.LogRequest), while this supd started it.
    log_relay: int | None = None

    def new_run_ooms(self, counter: int) -> None:
        """A run begins on a scope whose OOM counter reads `counter`: the last
        run's kills join the earlier ones."""
        self.oom_kills_earlier += self.oom_kills_run
        self.oom_kills_run = 0
        self.oom_kills_at_start = counter

    def ooms_now(self, counter: int | None) -> int:
        """This run's OOM kills, given its scope's counter now (None: unread,
        or the scope is gone: the count read as the run ended)."""
        if counter is None:
            return self.oom_kills_run
        return max(self.oom_kills_run, counter - self.oom_kills_at_start)

    def run_ended_ooms(self, counter: int | None) -> int:
        """The run's final OOM count, read off its scope before it goes."""
        self.oom_kills_run = self.ooms_now(counter)
        return self.oom_kills_run

    def poke(self) -> None:
        self.wake.set()

    def new_wake(self) -> anyio.Event:
        self.wake = anyio.Event()
        return self.wake

    # --- read-only views of the lifecycle (status, policies, restore)

    @property
    def state(self) -> UnitState:
        return self.life.state

    @property
    def active(self) -> bool:
        """A process exists or is being set up (or torn down)."""
        return self.life.has_process or self.life.spawning or self.life.state is UnitState.STOPPING

    @property
    def removed(self) -> bool:
        return self.life.removed

    @property
    def stop_reason(self) -> str:
        """Why the unit is stopping, or why it last stopped (the reason of its
        inactive state): restore.record_for tells a shutdown stop by it."""
        return self.life.stop_reason or self.life.reason

    @property
    def freeze_reason(self) -> str | None:
        return self.life.freeze_reason

    @freeze_reason.setter
    def freeze_reason(self, value: str | None) -> None:
        self._restore(freeze_reason=value)

    # --- history a restarted supd restores before the unit's task first runs

    @property
    def error(self) -> str | None:
        return self.life.error

    @error.setter
    def error(self, value: str | None) -> None:
        self._restore(error=value)

    @property
    def restarts(self) -> int:
        return self.life.restarts

    @restarts.setter
    def restarts(self, value: int) -> None:
        self._restore(restarts=value)

    @property
    def last_exit(self) -> ExitStatus | None:
        return self.life.last_exit

    @last_exit.setter
    def last_exit(self, value: ExitStatus | None) -> None:
        self._restore(last_exit=value)

    @property
    def want_running(self) -> bool:
        return self.life.want_running

    @want_running.setter
    def want_running(self, value: bool) -> None:
        self._restore(want_running=value)

    @property
    def user_stopped(self) -> bool:
        return self.life.user_stopped

    @user_stopped.setter
    def user_stopped(self, value: bool) -> None:
        self._restore(user_stopped=value)

    def _restore(self, **changes: Any) -> None:
        # Only history, never the state: that changes through lifecycle.step.
        self.life = replace(self.life, **changes)
