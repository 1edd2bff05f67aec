"""The unit lifecycle: one pure function, `step(life, event, now) -> Step`.

`Life` is everything the lifecycle decides with (state, reason, what the
unit should be doing, restart and start-limit history); events are what
happened (a user verb, a process exit, a health verdict, a reload, a supd
restart ...). `step` returns the next `Life` and the actions the daemon must
carry out (spawn, signal a stop, freeze ...). It is the only place a unit's
state changes; the daemon's unit task applies its results (see
docs/architecture.md, "How a unit runs"). Pure: no I/O, `now` is monotonic
seconds given by the caller.

Rules it keeps (tests/unit/test_policy_lifecycle.py checks them over random
event sequences):
- a user stop is never followed by a start until a user start or restart, or
  a new boot;
- `failed` is left only by a user start or restart, a new definition of the
  unit (an edited file), or a new boot;
- every state carries a non-empty reason; `error` exactly when the unit has
  no valid definition;
- restart delays double from `delay` to `max_delay`; a run of `reset_after`,
  a user start, a new definition or a new boot start them over.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Final, Union

from supervisor.policy.ratelimit import record_start
from supervisor.policy.restart import BackoffState, ExitStatus, should_restart
from supervisor.policy.resume import Action as Action_
from supervisor.policy.state import UnitState, can_transition
from supervisor.units.model import RestartSpec

S = UnitState

USER: Final = "user"
ENDED_WHILE_AWAY: Final = ExitStatus(code=None, signal=None, reason="ended while supd was not running")
# States in which a process may exist.
PROCESS_STATES: Final = frozenset({S.STARTING, S.RUNNING, S.STOPPING, S.FROZEN})


class LifecycleError(Exception):
    """A transition outside policy.state.TRANSITIONS: a bug in this module."""


@dataclass(frozen=True)
class Life:
    """What the lifecycle knows about one unit. A value: `step` returns a new one."""

    state: UnitState = S.INACTIVE
    reason: str = "loaded"
    spec: RestartSpec | None = None  # None: no valid definition (state error)
    enabled: bool = False
    want_running: bool = False
    user_stopped: bool = False  # the last stop was the user's; only a user start undoes it
    spawning: bool = False  # a start is past its start-limit check and has no process yet
    has_process: bool = False
    # A stop in progress (state stopping, or starting with a stop queued):
    stop_reason: str | None = None
    stop_is_failure: bool = False  # health, max-frozen: the restart policy applies
    freeze_reason: str | None = None
    restarts: int = 0  # total restarts by policy (shown in status)
    backoff: BackoffState = field(default_factory=BackoffState)
    starts: tuple[float, ...] = ()  # start-limit stamps
    retry_at: float | None = None  # restarting: when the next start is due
    last_exit: ExitStatus | None = None
    error: str | None = None
    removed: bool = False

    @property
    def stop_pending(self) -> bool:
        return self.stop_reason is not None

    def due(self, now: float) -> bool:
        """The daemon should send `Launch` now."""
        if not self.want_running or self.spec is None or self.removed:
            return False
        if self.state in (S.INACTIVE, S.EXITED):
            return True
        if self.state is S.STARTING:
            return not self.spawning and not self.has_process
        if self.state is S.RESTARTING:
            return self.retry_at is None or now >= self.retry_at
        return False


# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class Load:
    """A unit file read for the first time (error: why it is invalid)."""

    spec: RestartSpec | None
    enabled: bool
    error: str | None = None


@dataclass(frozen=True)
class Redefine:
    """A changed unit file. `restart_needed`: the running process cannot take
    the change live (anything beyond [resources])."""

    spec: RestartSpec | None
    enabled: bool
    error: str | None = None
    restart_needed: bool = True


@dataclass(frozen=True)
class Remove:
    """The unit file is gone."""


@dataclass(frozen=True)
class Start:
    """`supctl start`: also the only way out of failed."""


@dataclass(frozen=True)
class Restart:
    """`supctl restart`: stop if needed, then start."""


@dataclass(frozen=True)
class Stop:
    reason: str = USER
    # supd's own shutdown keeps the unit wanted: the next supd starts it again.
    keep_wanted: bool = False

    @property
    def by_user(self) -> bool:
        return self.reason == USER


@dataclass(frozen=True)
class Fail:
    """Stop the process and treat its end as a failure ("health", "max-frozen")."""

    reason: str


@dataclass(frozen=True)
class Freeze:
    reason: str = USER  # user | memory | pressure | health


@dataclass(frozen=True)
class Thaw:
    reason: str = USER


@dataclass(frozen=True)
class Wait:
    """The start waits for units it is `after`/`requires`."""

    on: tuple[str, ...]


@dataclass(frozen=True)
class DependencyFailed:
    name: str


@dataclass(frozen=True)
class Launch:
    """The daemon is about to start the unit (sent when `Life.due`)."""


@dataclass(frozen=True)
class Started:
    pid: int


@dataclass(frozen=True)
class StartFailed:
    error: str


@dataclass(frozen=True)
class Exited:
    status: ExitStatus


@dataclass(frozen=True)
class Crashed:
    """An unexpected error in the daemon's work for this unit (its process, if
    any, has been cleaned up by the daemon)."""

    error: str


@dataclass(frozen=True)
class UpdateApplied:
    changed: tuple[str, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdateRefused:
    """A live resource change the kernel or systemd refused: old limits stay."""

    error: str


@dataclass(frozen=True)
class StopStalled:
    """The process did not end within the stop timeout and SIGKILL's grace
    (e.g. a parent cgroup is frozen); the stop is retried."""

    why: str


@dataclass(frozen=True)
class Adopted:
    """A process left by a previous supd is supervised again."""

    pid: int
    frozen_by: str | None = None


@dataclass(frozen=True)
class Resumed:
    """supd started again and found a record of this unit: `action` is
    policy.resume's decision for it (`adopt` is followed by `Adopted` once
    the unit's task has looked at the process), with the history to carry
    on. The unit's task applies it before anything else."""

    action: Action_
    why: str
    restarts: int = 0
    user_stopped: bool = False
    last_exit: ExitStatus | None = None
    new_boot: bool = False
    error: str | None = None  # action "failed": the message to show
    frozen_by_user: bool = False  # action "adopt": a user's freeze to keep


Event = Union[
    Load, Redefine, Remove, Start, Restart, Stop, Fail, Freeze, Thaw, Wait, DependencyFailed, Launch, Started,
    StartFailed, Exited, Crashed, UpdateApplied, UpdateRefused, StopStalled, Adopted, Resumed,
]  # fmt: skip


# ----------------------------------------------------------------- actions


@dataclass(frozen=True)
class Spawn:
    """Start a process (rootfs, spawn, cgroup, go)."""


@dataclass(frozen=True)
class SignalStop:
    """Stop the process: thaw if frozen, the stop signal, SIGKILL after the timeout."""


@dataclass(frozen=True)
class FreezeProcess:
    pass


@dataclass(frozen=True)
class ThawProcess:
    pass


@dataclass(frozen=True)
class StopDependents:
    """Units that `requires` this one stop too."""


@dataclass(frozen=True)
class Announce:
    """An event beside (or instead of) a state change: `event` with `reason`."""

    event: str
    reason: str


Action = Union[Spawn, SignalStop, FreezeProcess, ThawProcess, StopDependents, Announce]


@dataclass(frozen=True)
class Step:
    life: Life
    actions: tuple[Action, ...] = ()
    # Why the event was refused (HTTP 409); `life` is then unchanged.
    refused: str | None = None
    # Event fields beside the state change (exit code, delay, pid ...).
    fields: tuple[tuple[str, Any], ...] = ()
    # Announce the state even if unchanged (an invalid file invalid in a new way).
    again: bool = False

    @property
    def state(self) -> UnitState:
        return self.life.state

    @property
    def reason(self) -> str:
        return self.life.reason


# -------------------------------------------------------------- the function


def step(life: Life, event: Event, now: float) -> Step:
    """The one transition function. Raises LifecycleError only on a bug."""
    result = _HANDLERS[type(event)](life, event, now)
    new = result.life
    # Taking over after a supd restart or a reboot is a fresh start, not a move
    # along the table (a recorded "running" may now be "inactive").
    take_over = isinstance(event, (Adopted, Resumed))
    if new.state != life.state and not take_over and not can_transition(life.state, new.state):
        raise LifecycleError(f"{life.state.value} -> {new.state.value} on {event!r}")
    if not new.reason:
        raise LifecycleError(f"no reason for {new.state.value} on {event!r}")
    return result


def _to(life: Life, state: UnitState, reason: str, **changes: Any) -> Life:
    return replace(life, state=state, reason=reason, **changes)


def _fresh_policy(life: Life) -> Life:
    return replace(life, backoff=BackoffState(), starts=(), retry_at=None)


def _refuse(life: Life, why: str) -> Step:
    return Step(life, refused=why)


# --- loading


def _load(life: Life, e: Load, now: float) -> Step:
    if e.spec is None:
        return Step(_to(life, S.ERROR, "invalid unit file", spec=None, error=e.error, want_running=False), again=True)
    return Step(replace(life, spec=e.spec, enabled=e.enabled, want_running=e.enabled, error=None), (Announce("loaded", "unit file"),))


def _redefine(life: Life, e: Redefine, now: float) -> Step:
    if life.removed:
        return Step(life)  # a file that comes back is a new unit
    busy = life.has_process or life.spawning
    if e.spec is None:
        changed = replace(life, spec=None, enabled=False, want_running=False, error=e.error)
        if busy:
            # Stop first; the end of the process lands in error (see _exited).
            return _begin_stop(changed, "invalid unit file", keep_wanted=False)
        return Step(_to(changed, S.ERROR, "invalid unit file", retry_at=None), again=True)
    if busy and not e.restart_needed:
        return Step(replace(life, spec=e.spec, enabled=e.enabled))
    wanted = life.want_running or (e.enabled and not life.user_stopped)
    changed = _fresh_policy(replace(life, spec=e.spec, enabled=e.enabled, error=None))
    if busy:
        return _begin_stop(changed, "unit file changed", keep_wanted=wanted)
    if life.state in (S.ERROR, S.FAILED, S.RESTARTING, S.STARTING):
        return Step(_to(changed, S.INACTIVE, "unit file changed", want_running=wanted))
    return Step(replace(changed, want_running=wanted), (Announce("reloaded", "unit file changed"),))


def _remove(life: Life, e: Remove, now: float) -> Step:
    gone = replace(life, removed=True)
    if life.has_process or life.spawning:
        return _begin_stop(gone, "unit file removed", keep_wanted=False)
    if life.state in (S.RESTARTING, S.STARTING):
        return Step(_to(gone, S.INACTIVE, "unit file removed", want_running=False, retry_at=None))
    return Step(replace(gone, want_running=False))


# --- user verbs


def _start(life: Life, e: Start, now: float) -> Step:
    if life.removed:
        return _refuse(life, "its unit file was removed")
    if life.spec is None:
        return _refuse(life, f"invalid unit file: {life.error}")
    # A user start forgives: fresh backoff and start limit.
    started = _fresh_policy(replace(life, want_running=True, user_stopped=False))
    if life.state is S.FAILED:
        return Step(_to(started, S.INACTIVE, USER, error=None))
    if life.state is S.STOPPING:
        return Step(replace(started, stop_reason=life.stop_reason, stop_is_failure=False))
    if life.state is S.RESTARTING:
        # The user's start replaces the policy's pending restart: it launches
        # now, and as a start (`starting (start)`), not as `(restart)`.
        return Step(_to(started, S.INACTIVE, USER, retry_at=None))
    return Step(started)


def _restart(life: Life, e: Restart, now: float) -> Step:
    if life.removed:
        return _refuse(life, "its unit file was removed")
    if life.spec is None:
        return _refuse(life, f"invalid unit file: {life.error}")
    if life.state is S.STOPPING:
        return _refuse(life, "already stopping; start it once it has stopped")
    if life.has_process or life.spawning:
        fresh = _fresh_policy(replace(life, error=None))
        return _begin_stop(fresh, "user restart", keep_wanted=True, user=False)
    return _start(life, Start(), now)


def _stop(life: Life, e: Stop, now: float) -> Step:
    # Only a user start undoes a user stop (supd's own shutdown does not).
    user = e.by_user or life.user_stopped
    if life.has_process or life.spawning:
        return _begin_stop(life, e.reason, keep_wanted=e.keep_wanted and life.want_running, user=user)
    if life.state is S.STOPPING:  # no process: the stop is finishing
        return Step(replace(life, want_running=e.keep_wanted and life.want_running, user_stopped=user))
    changes: dict[str, Any] = {"want_running": e.keep_wanted and life.want_running, "user_stopped": user}
    if life.state in (S.RESTARTING, S.STARTING):
        return Step(_to(life, S.INACTIVE, e.reason, retry_at=None, **changes), (StopDependents(),))
    return Step(replace(life, **changes))


def _begin_stop(life: Life, reason: str, *, keep_wanted: bool, user: bool | None = None, failure: bool = False) -> Step:
    """`user`: the stop is (True) or undoes (False) a user stop; None keeps what was."""
    stopping = replace(
        life,
        want_running=keep_wanted and not life.removed,
        user_stopped=life.user_stopped if user is None else user,
        stop_reason=reason,
        stop_is_failure=failure,
    )
    if life.state is S.STOPPING:  # already on its way down: the newer intent wins
        return Step(stopping)
    if not life.has_process:
        # Spawning: the stop waits for the process (or its failure to start).
        return Step(_to(stopping, S.STOPPING, reason))
    return Step(_to(stopping, S.STOPPING, reason), (SignalStop(),))


def _fail(life: Life, e: Fail, now: float) -> Step:
    if not life.has_process or life.state not in (S.RUNNING, S.FROZEN):
        return _refuse(life, f"{life.state.value}: nothing running to fail")
    return _begin_stop(life, e.reason, keep_wanted=life.want_running, failure=True)


def _freeze(life: Life, e: Freeze, now: float) -> Step:
    if life.state is not S.RUNNING or not life.has_process:
        return _refuse(life, f"is {life.state.value}; only a running unit can be frozen")
    return Step(_to(life, S.FROZEN, e.reason, freeze_reason=e.reason), (FreezeProcess(),))


def _thaw(life: Life, e: Thaw, now: float) -> Step:
    if life.state is not S.FROZEN:
        return _refuse(life, f"is {life.state.value}, not frozen")
    reason = USER if e.reason == USER else f"thaw {e.reason}"
    return Step(_to(life, S.RUNNING, reason, freeze_reason=None), (ThawProcess(),))


# --- starting


def _wait(life: Life, e: Wait, now: float) -> Step:
    if not life.due(now):
        return Step(life)
    return Step(_to(life, S.STARTING, "waiting for " + ", ".join(e.on), retry_at=None))


def _dependency_failed(life: Life, e: DependencyFailed, now: float) -> Step:
    if life.has_process or life.spawning or life.state in (S.FAILED, S.ERROR):
        return Step(life)
    return Step(
        _to(life, S.FAILED, "dependency", want_running=False, retry_at=None, error=f"required unit {e.name} is not running"),
        (StopDependents(),),
    )


def _launch(life: Life, e: Launch, now: float) -> Step:
    if not life.due(now):
        return Step(life)
    assert life.spec is not None
    starts = record_start(life.starts, life.spec.limit_burst, life.spec.limit_interval, now)
    if starts is None:
        error = (
            f"start limit hit: started more than {life.spec.limit_burst} times in "
            f"{life.spec.limit_interval:g}s; `supctl start` clears it"
        )
        return Step(_to(life, S.FAILED, "start-limit", want_running=False, retry_at=None, error=error), (StopDependents(),))
    reason = "restart" if life.state is S.RESTARTING else "start"
    return Step(_to(life, S.STARTING, reason, starts=starts, spawning=True, retry_at=None), (Spawn(),))


def _started(life: Life, e: Started, now: float) -> Step:
    if not life.spawning:
        raise LifecycleError(f"process {e.pid} started without a launch (state {life.state.value})")
    running = replace(life, spawning=False, has_process=True, backoff=life.backoff.started(now), error=None)
    if life.stop_pending:  # stopped while it was being set up
        return Step(running, (SignalStop(),), fields=(("pid", e.pid),))
    return Step(_to(running, S.RUNNING, "started"), fields=(("pid", e.pid),))


def _start_failed(life: Life, e: StartFailed, now: float) -> Step:
    failed = replace(life, spawning=False, has_process=False)
    if life.stop_pending and not life.stop_is_failure:
        return _stopped(failed, now)
    return Step(
        _to(failed, S.FAILED, "cannot start", want_running=False, error=e.error, stop_reason=None, freeze_reason=None),
        (StopDependents(),),
    )


# --- ending


def _exited(life: Life, e: Exited, now: float) -> Step:
    if not life.has_process:
        return Step(life)  # a late or duplicate report: nothing ran
    status = e.status
    ended = replace(life, has_process=False, spawning=False, freeze_reason=None)
    if life.stop_pending and not life.stop_is_failure:
        return _stopped(replace(ended, last_exit=status), now, status)
    if life.stop_is_failure and life.stop_reason is not None:
        status = status.because(life.stop_reason)
    return _by_policy(replace(ended, stop_reason=None, stop_is_failure=False, last_exit=status), status, now)


def _stopped(life: Life, now: float, status: ExitStatus | None = None) -> Step:
    """A stop someone asked for is over."""
    reason = life.stop_reason or USER
    done = replace(life, stop_reason=None, stop_is_failure=False)
    fields = _exit_fields(status)
    if done.spec is None:
        return Step(_to(done, S.ERROR, "invalid unit file", want_running=False), (StopDependents(),), fields=fields, again=True)
    actions: tuple[Action, ...] = () if done.want_running else (StopDependents(),)
    return Step(_to(done, S.INACTIVE, reason), actions, fields=fields)


def _by_policy(life: Life, status: ExitStatus, now: float) -> Step:
    """The process ended on its own (or failed a check): restart or not."""
    fields = _exit_fields(status)
    if life.spec is None:
        return Step(_to(life, S.ERROR, "invalid unit file", want_running=False), (StopDependents(),), fields=fields, again=True)
    backoff = life.backoff.exited(life.spec, now)
    if life.want_running and not life.removed and should_restart(life.spec.policy, status):
        delay = backoff.delay
        restarting = _to(life, S.RESTARTING, status.reason, backoff=backoff, retry_at=now + delay, restarts=life.restarts + 1)
        return Step(restarting, fields=fields + (("delay", round(delay, 3)),))
    return Step(_to(life, S.EXITED, status.reason, backoff=backoff, want_running=False), (StopDependents(),), fields=fields)


def _crashed(life: Life, e: Crashed, now: float) -> Step:
    base = replace(life, has_process=False, spawning=False, stop_reason=None, stop_is_failure=False, freeze_reason=None, retry_at=None)
    if life.spec is None:
        return Step(_to(base, S.ERROR, "invalid unit file", want_running=False), (StopDependents(),), again=True)
    if life.stop_pending and not life.stop_is_failure:
        # It was on its way down anyway; what failed was the cleanup.
        return Step(_to(base, S.INACTIVE, life.stop_reason or USER, error=e.error), () if life.want_running else (StopDependents(),))
    return Step(_to(base, S.FAILED, "internal error", want_running=False, error=e.error), (StopDependents(),))


# --- live updates and stalls


def _update_applied(life: Life, e: UpdateApplied, now: float) -> Step:
    fields = (("changed", list(e.changed)), ("warnings", list(e.warnings)))
    return Step(replace(life, error=None), (Announce("updated", "resources changed live"),), fields=fields)


def _update_refused(life: Life, e: UpdateRefused, now: float) -> Step:
    return Step(replace(life, error=e.error), (Announce("update-refused", "kept the old limits"),), fields=(("error", e.error),))


def _stop_stalled(life: Life, e: StopStalled, now: float) -> Step:
    if life.state is not S.STOPPING:
        return Step(life)
    return Step(life, (Announce("stop-stalled", e.why),))


# --- supd restarts and reboots


def _adopted(life: Life, e: Adopted, now: float) -> Step:
    if life.spec is None:
        raise LifecycleError("cannot adopt a process for a unit with no valid definition")
    adopted = replace(life, has_process=True, spawning=False, backoff=life.backoff.started(now), retry_at=None)
    if e.frozen_by is not None:
        return Step(_to(adopted, S.FROZEN, e.frozen_by, freeze_reason=e.frozen_by), fields=(("pid", e.pid),))
    return Step(_to(adopted, S.RUNNING, "adopted"), fields=(("pid", e.pid),))


def _resumed(life: Life, e: Resumed, now: float) -> Step:
    history = replace(
        life,
        restarts=e.restarts,
        user_stopped=e.user_stopped,
        last_exit=e.last_exit if e.last_exit is not None else life.last_exit,
    )
    if e.new_boot:
        history = _fresh_policy(history)
    if e.action == "adopt" and life.spec is not None:
        return Step(replace(history, want_running=True, freeze_reason=USER if e.frozen_by_user else None))
    # Whatever ran is gone; nothing of a start or a stop is in progress.
    gone = replace(
        history, has_process=False, spawning=False, stop_reason=None, stop_is_failure=False, freeze_reason=None,
        retry_at=None,
    )  # fmt: skip
    if life.spec is None:  # an invalid file stays in error, whatever the record said
        return Step(replace(gone, want_running=False))
    if e.action == "failed":
        return Step(_to(gone, S.FAILED, e.why, want_running=False, error=e.error or e.why), again=True)
    if e.action == "stopped":
        return Step(replace(gone, want_running=False))
    if e.action == "start":
        return Step(replace(gone, want_running=True))
    if e.action == "ended":
        status = ENDED_WHILE_AWAY
        step = _by_policy(replace(gone, want_running=True, last_exit=status), status, now)
        return replace(step, actions=(Announce("ended", status.reason), *step.actions), fields=step.fields + (("why", e.why),))
    # as_enabled
    fresh = replace(gone, want_running=gone.enabled and not gone.user_stopped)
    if e.new_boot and life.state is not S.INACTIVE:
        return Step(_to(fresh, S.INACTIVE, "boot"))
    return Step(fresh)


def _exit_fields(status: ExitStatus | None) -> tuple[tuple[str, Any], ...]:
    if status is None:
        return ()
    return (("code", status.code), ("signal", status.signal))


_HANDLERS: Final[dict[type, Any]] = {
    Load: _load, Redefine: _redefine, Remove: _remove, Start: _start, Restart: _restart, Stop: _stop, Fail: _fail,
    Freeze: _freeze, Thaw: _thaw, Wait: _wait, DependencyFailed: _dependency_failed, Launch: _launch,
    Started: _started, StartFailed: _start_failed, Exited: _exited, Crashed: _crashed,
    UpdateApplied: _update_applied, UpdateRefused: _update_refused, StopStalled: _stop_stalled,
    Adopted: _adopted, Resumed: _resumed,
}  # fmt: skip
