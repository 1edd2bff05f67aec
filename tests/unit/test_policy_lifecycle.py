"""policy.lifecycle: the one transition function. Examples for each rule, then
a Hypothesis state machine that throws any sequence of physically possible
events at it and checks the invariants after each one."""

from __future__ import annotations

import signal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from supervisor.policy import lifecycle as lc
from supervisor.policy import resume
from supervisor.policy.restart import ExitStatus, backoff_delay
from supervisor.policy.state import UnitState, can_transition
from supervisor.units.model import RestartSpec

S = UnitState
ALWAYS = RestartSpec(policy="always", delay=0.1, max_delay=1.0, reset_after=60.0, limit_burst=5, limit_interval=10.0)
ON_FAILURE = RestartSpec(policy="on-failure", delay=0.1, max_delay=1.0, reset_after=60.0, limit_burst=5, limit_interval=10.0)
NO = RestartSpec(policy="no")


def run(life: lc.Life, *events: lc.Event, now: float = 100.0) -> lc.Life:
    for e in events:
        life = lc.step(life, e, now).life
    return life


def running(spec: RestartSpec = ALWAYS, now: float = 100.0) -> lc.Life:
    life = run(lc.Life(), lc.Load(spec, enabled=True), now=now)
    assert life.due(now)
    return run(life, lc.Launch(), lc.Started(42), now=now)


def test_a_loaded_enabled_unit_is_due_and_starts() -> None:
    life = lc.step(lc.Life(), lc.Load(ALWAYS, enabled=True), 0.0).life
    assert life.state is S.INACTIVE and life.due(0.0)
    launched = lc.step(life, lc.Launch(), 0.0)
    assert launched.state is S.STARTING and launched.actions == (lc.Spawn(),)
    started = lc.step(launched.life, lc.Started(7), 0.0)
    assert started.state is S.RUNNING and started.reason == "started" and ("pid", 7) in started.fields


def test_a_disabled_unit_waits_for_a_user_start() -> None:
    life = run(lc.Life(), lc.Load(ALWAYS, enabled=False))
    assert not life.due(0.0)
    assert run(life, lc.Start()).due(0.0)


def test_an_invalid_file_is_error_and_cannot_start() -> None:
    step = lc.step(lc.Life(), lc.Load(None, enabled=True, error="u.toml: bad"), 0.0)
    assert step.state is S.ERROR and step.life.error == "u.toml: bad" and step.again
    assert lc.step(step.life, lc.Start(), 0.0).refused is not None
    assert not step.life.due(0.0)


def test_user_stop_ends_inactive_and_never_restarts() -> None:
    life = running()
    stopping = lc.step(life, lc.Stop(), 100.0)
    assert stopping.state is S.STOPPING and stopping.actions == (lc.SignalStop(),)
    ended = lc.step(stopping.life, lc.Exited(ExitStatus.killed(signal.SIGKILL)), 101.0)
    assert ended.state is S.INACTIVE and ended.reason == "user"
    assert not ended.life.due(10_000.0) and ended.life.user_stopped


def test_exit_restarts_with_doubling_backoff_then_hits_the_start_limit() -> None:
    life = running(ALWAYS, now=0.0)
    delays = []
    now = 0.0
    for _ in range(4):
        step = lc.step(life, lc.Exited(ExitStatus.exited(1)), now)
        assert step.state is S.RESTARTING and step.reason == "exit 1"
        delays.append(dict(step.fields)["delay"])
        now += dict(step.fields)["delay"]
        assert not step.life.due(now - 0.01) and step.life.due(now)
        life = run(step.life, lc.Launch(), lc.Started(1), now=now)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8])
    step = lc.step(life, lc.Exited(ExitStatus.exited(1)), now)
    failed = lc.step(step.life, lc.Launch(), now + 2)
    assert failed.state is S.FAILED and failed.reason == "start-limit" and "start limit hit" in (failed.life.error or "")
    assert lc.StopDependents() in failed.actions


def test_a_long_run_resets_the_backoff() -> None:
    life = running(ALWAYS, now=0.0)
    first = lc.step(life, lc.Exited(ExitStatus.exited(1)), 0.5)
    life = run(first.life, lc.Launch(), lc.Started(1), now=0.6)
    second = lc.step(life, lc.Exited(ExitStatus.exited(1)), 0.7)
    assert dict(second.fields)["delay"] == pytest.approx(0.2)
    life = run(second.life, lc.Launch(), lc.Started(1), now=1.0)
    third = lc.step(life, lc.Exited(ExitStatus.exited(1)), 61.0)
    assert dict(third.fields)["delay"] == pytest.approx(0.1)


def test_a_clean_exit_under_on_failure_is_exited() -> None:
    step = lc.step(running(ON_FAILURE), lc.Exited(ExitStatus.exited(0)), 101.0)
    assert step.state is S.EXITED and step.reason == "exit 0" and not step.life.want_running


def test_failed_is_left_only_by_a_user_start() -> None:
    life = run(running(NO), lc.Fail("health"))
    life = run(life, lc.Exited(ExitStatus.killed(signal.SIGTERM)))
    assert life.state is S.EXITED and life.last_exit is not None and life.last_exit.reason == "health"
    failed = run(lc.Life(), lc.Load(ALWAYS, True), lc.Launch(), lc.StartFailed("exec /x: No such file"))
    assert failed.state is S.FAILED and failed.error == "exec /x: No such file"
    for e in (lc.Launch(), lc.Stop(), lc.Thaw(), lc.Exited(ExitStatus.exited(1))):
        assert lc.step(failed, e, 200.0).state is S.FAILED
    started = lc.step(failed, lc.Start(), 200.0)
    assert started.state is S.INACTIVE and started.reason == "user" and started.life.due(200.0)


def test_a_user_start_is_logged_as_a_start_after_failed_or_during_a_restart_delay() -> None:
    failed = run(lc.Life(), lc.Load(ALWAYS, True), lc.Launch(), lc.StartFailed("exec /x: No such file"))
    waiting = run(running(), lc.Exited(ExitStatus.exited(1)), now=101.0)
    assert waiting.state is S.RESTARTING and waiting.restarts == 1
    for life in (failed, waiting):
        started = run(life, lc.Start(), now=101.5)
        assert started.due(101.5)  # at once, not at the policy's retry time
        launched = lc.step(started, lc.Launch(), 101.5)
        assert launched.state is S.STARTING and launched.reason == "start"
    assert run(waiting, lc.Start(), now=101.5).restarts == 1  # a user start is no restart, nor resets the count


def test_a_health_failure_counts_as_failure_for_the_policy() -> None:
    life = run(running(ON_FAILURE), lc.Fail("health"))
    assert life.state is S.STOPPING
    step = lc.step(life, lc.Exited(ExitStatus.killed(signal.SIGTERM)), 101.0)
    assert step.state is S.RESTARTING and step.reason == "health"


def test_freeze_and_thaw_only_where_they_make_sense() -> None:
    life = running()
    frozen = lc.step(life, lc.Freeze("memory"), 0.0)
    assert frozen.state is S.FROZEN and frozen.reason == "memory" and frozen.actions == (lc.FreezeProcess(),)
    assert lc.step(frozen.life, lc.Freeze(), 0.0).refused
    thawed = lc.step(frozen.life, lc.Thaw("pressure"), 0.0)
    assert thawed.state is S.RUNNING and thawed.reason == "thaw pressure"
    assert lc.step(life, lc.Thaw(), 0.0).refused
    # a stop of a frozen unit is a stop (the shell thaws first)
    stop = lc.step(frozen.life, lc.Stop(), 0.0)
    assert stop.state is S.STOPPING and stop.actions == (lc.SignalStop(),)
    # freeze while stopping is refused: no freeze-vs-stop race
    assert lc.step(stop.life, lc.Freeze(), 0.0).refused


def test_reload_to_an_invalid_file_while_running_ends_in_error() -> None:
    stopping = lc.step(running(), lc.Redefine(None, False, "u.toml: [exec].command: expected a list"), 0.0)
    assert stopping.state is S.STOPPING and stopping.reason == "invalid unit file"
    ended = lc.step(stopping.life, lc.Exited(ExitStatus.killed(signal.SIGTERM)), 1.0)
    assert ended.state is S.ERROR and ended.life.error == "u.toml: [exec].command: expected a list"
    fixed = lc.step(ended.life, lc.Redefine(ALWAYS, True), 2.0)
    assert fixed.state is S.INACTIVE and fixed.life.due(2.0)


def test_a_changed_file_restarts_a_running_unit_and_keeps_a_stopped_one_stopped() -> None:
    stopping = lc.step(running(), lc.Redefine(ALWAYS, True), 0.0)
    assert stopping.state is S.STOPPING and stopping.reason == "unit file changed"
    ended = lc.step(stopping.life, lc.Exited(ExitStatus.killed(signal.SIGTERM)), 1.0)
    assert ended.state is S.INACTIVE and ended.life.due(1.0)
    stopped = run(running(), lc.Stop(), lc.Exited(ExitStatus.killed(signal.SIGTERM)))
    assert not run(stopped, lc.Redefine(ALWAYS, True)).due(5.0)
    live = lc.step(running(), lc.Redefine(ALWAYS, True, restart_needed=False), 0.0)
    assert live.state is S.RUNNING and not live.actions


def test_a_refused_live_update_keeps_running_and_says_why() -> None:
    step = lc.step(running(), lc.UpdateRefused("memory.max: Device or resource busy"), 0.0)
    assert step.state is S.RUNNING and step.life.error == "memory.max: Device or resource busy"
    assert lc.Announce("update-refused", "kept the old limits") in step.actions


def test_a_stop_while_spawning_waits_for_the_process() -> None:
    life = run(lc.Life(), lc.Load(ALWAYS, True), lc.Launch())
    stopping = lc.step(life, lc.Stop(), 0.0)
    assert stopping.state is S.STOPPING and not stopping.actions
    started = lc.step(stopping.life, lc.Started(9), 0.0)
    assert started.state is S.STOPPING and started.actions == (lc.SignalStop(),)
    never = lc.step(stopping.life, lc.StartFailed("boom"), 0.0)
    assert never.state is S.INACTIVE and never.reason == "user"


def test_a_crash_in_the_unit_work_is_failed_with_the_message() -> None:
    step = lc.step(running(), lc.Crashed("internal error: KeyError('x')"), 0.0)
    assert step.state is S.FAILED and step.reason == "internal error" and step.life.error == "internal error: KeyError('x')"


def test_supd_shutdown_keeps_the_unit_wanted() -> None:
    life = run(running(), lc.Stop("supd shutdown", keep_wanted=True), lc.Exited(ExitStatus.killed(signal.SIGTERM)))
    assert life.state is S.INACTIVE and life.reason == "supd shutdown" and life.due(0.0)


def test_resume_adopts_or_applies_the_policy_and_a_new_boot_starts_fresh() -> None:
    loaded = run(lc.Life(), lc.Load(ALWAYS, True))
    adopt = lc.step(loaded, lc.Resumed("adopt", "same process, same scope", restarts=3, frozen_by_user=True), 0.0)
    assert adopt.life.want_running and adopt.life.restarts == 3 and adopt.life.freeze_reason == "user"
    assert lc.step(adopt.life, lc.Adopted(42, "user"), 0.0).state is S.FROZEN
    ended = lc.step(loaded, lc.Resumed("ended", "pid 42 is gone", restarts=3), 100.0)
    assert ended.state is S.RESTARTING and ended.reason == "ended while supd was not running"
    assert ended.life.restarts == 4 and lc.Announce("ended", "ended while supd was not running") in ended.actions
    assert dict(ended.fields)["why"] == "pid 42 is gone"
    no = lc.step(run(lc.Life(), lc.Load(NO, True)), lc.Resumed("ended", "gone"), 100.0)
    assert no.state is S.EXITED and not no.life.due(200.0)
    failed = lc.step(loaded, lc.Resumed("failed", "restored", error="x"), 0.0)
    assert failed.state is S.FAILED and failed.reason == "restored" and not failed.life.due(0.0)
    boot = lc.step(failed.life, lc.Resumed("as_enabled", "new boot", new_boot=True), 0.0)
    assert boot.state is S.INACTIVE and boot.reason == "boot" and boot.life.due(0.0) and boot.life.restarts == 0
    stopped = lc.step(loaded, lc.Resumed("stopped", "stopped by a user", user_stopped=True), 0.0)
    assert stopped.state is S.INACTIVE and not stopped.life.due(0.0) and stopped.life.user_stopped
    disabled = run(lc.Life(), lc.Load(ALWAYS, False))
    assert lc.step(disabled, lc.Resumed("start", "stopped at supd's shutdown"), 0.0).life.due(0.0)
    assert not lc.step(disabled, lc.Resumed("as_enabled", "settled"), 0.0).life.due(0.0)


def test_resume_of_an_invalid_file_stays_in_error() -> None:
    invalid = run(lc.Life(), lc.Load(None, False, "bad key"))
    for action in ("adopt", "start", "ended", "failed", "as_enabled"):
        step = lc.step(invalid, lc.Resumed(action, "why"), 0.0)  # type: ignore[arg-type]
        assert step.state is S.ERROR and not step.life.want_running and not step.life.has_process


def test_every_handler_is_registered() -> None:
    for event_type in lc.Event.__args__:  # type: ignore[attr-defined]
        assert event_type in lc._HANDLERS


# ---------------------------------------------------------------- Hypothesis

SPECS = st.sampled_from([ALWAYS, ON_FAILURE, NO, RestartSpec(policy="on-abnormal", delay=0.5, max_delay=4.0, reset_after=5.0)])
EXITS = st.sampled_from(
    [ExitStatus.exited(0), ExitStatus.exited(1), ExitStatus.killed(signal.SIGKILL), ExitStatus.killed(signal.SIGTERM),
     ExitStatus(None, signal.SIGKILL, "oom-kill")]
)  # fmt: skip
REASONS = st.sampled_from(["user", "memory", "pressure", "health"])


class LifecycleMachine(RuleBasedStateMachine):
    """Drives one unit's Life with events the daemon can really send (a
    process exits only if there is one ...) and a clock that moves forward."""

    def __init__(self) -> None:
        super().__init__()
        self.life = lc.Life()
        self.now = 1000.0
        self.loaded = False
        # For the invariants:
        self.user_stopped_since = False  # a user stop and no user start since
        self.consecutive = 0  # restarts since the last backoff reset, as the docs define it
        self.run_started: float | None = None

    def apply(self, event: lc.Event) -> lc.Step:
        before = self.life
        step = lc.step(before, event, self.now)
        after = step.life
        if step.refused is not None:
            assert after == before
        if after.state != before.state and not isinstance(event, (lc.Adopted, lc.Resumed)):
            assert can_transition(before.state, after.state)
        # failed is left only by a user start/restart, a new definition or a new boot
        if before.state is S.FAILED and after.state is not S.FAILED:
            assert isinstance(event, (lc.Start, lc.Restart, lc.Redefine, lc.Resumed)), event
        # a user stop never restarts
        if self.user_stopped_since and after.state in (S.STARTING, S.RUNNING, S.RESTARTING):
            assert before.state is after.state or isinstance(event, (lc.Adopted, lc.Resumed)), (before, event)
        # backoff as documented
        if after.state is S.RESTARTING and before.state is not S.RESTARTING:
            assert after.spec is not None
            if self.run_started is None or self.now - self.run_started >= after.spec.reset_after:
                self.consecutive = 0
            assert dict(step.fields)["delay"] == pytest.approx(backoff_delay(after.spec, self.consecutive))
            self.consecutive += 1
        if isinstance(event, lc.Started):
            self.run_started = self.now
        if isinstance(event, (lc.Start, lc.Restart)) and step.refused is None:
            self.user_stopped_since = False
            self.consecutive = 0
            self.run_started = None if not self.life.has_process else self.run_started
        if isinstance(event, lc.Redefine) and event.spec is not None and (event.restart_needed or not before.has_process):
            self.consecutive = 0
        if isinstance(event, lc.Resumed) and event.new_boot:
            self.user_stopped_since = False
            self.consecutive = 0
        if isinstance(event, lc.Stop) and event.by_user:
            self.user_stopped_since = True
        self.life = after
        return step

    # --- time and loading

    @rule(dt=st.floats(min_value=0.0, max_value=100.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: not self.loaded)
    @rule(spec=SPECS, enabled=st.booleans(), valid=st.booleans())
    def load(self, spec: RestartSpec, enabled: bool, valid: bool) -> None:
        self.loaded = True
        self.apply(lc.Load(spec if valid else None, enabled, None if valid else "x.toml: bad"))

    @precondition(lambda self: self.loaded)
    @rule(spec=SPECS, enabled=st.booleans(), valid=st.booleans(), restart_needed=st.booleans())
    def redefine(self, spec: RestartSpec, enabled: bool, valid: bool, restart_needed: bool) -> None:
        self.apply(lc.Redefine(spec if valid else None, enabled, None if valid else "x.toml: bad", restart_needed))

    # --- the daemon's own moves

    @precondition(lambda self: self.loaded)
    @rule()
    def launch(self) -> None:
        due = self.life.due(self.now)
        step = self.apply(lc.Launch())
        if not due:
            assert step.life == self.life and not step.actions

    @precondition(lambda self: self.life.due(1e18))
    @rule(deps=st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True))
    def wait_for_dependencies(self, deps: list[str]) -> None:
        self.apply(lc.Wait(tuple(deps)))

    @precondition(lambda self: self.loaded)
    @rule()
    def dependency_failed(self) -> None:
        self.apply(lc.DependencyFailed("db"))

    @precondition(lambda self: self.life.spawning)
    @rule(pid=st.integers(min_value=2, max_value=10_000))
    def started(self, pid: int) -> None:
        self.apply(lc.Started(pid))

    @precondition(lambda self: self.life.spawning)
    @rule()
    def start_failed(self) -> None:
        self.apply(lc.StartFailed("exec /bin/x: No such file or directory"))

    @precondition(lambda self: self.life.has_process)
    @rule(status=EXITS)
    def exits(self, status: ExitStatus) -> None:
        self.apply(lc.Exited(status))

    @precondition(lambda self: self.loaded)
    @rule()
    def crash(self) -> None:
        self.apply(lc.Crashed("internal error: RuntimeError('boom')"))

    @precondition(lambda self: self.life.has_process)
    @rule(refused=st.booleans())
    def live_update(self, refused: bool) -> None:
        self.apply(lc.UpdateRefused("memory.max: EBUSY") if refused else lc.UpdateApplied(("memory_max",)))

    @precondition(lambda self: self.life.state is S.STOPPING)
    @rule()
    def stop_stalls(self) -> None:
        self.apply(lc.StopStalled("frozen by parent"))

    # --- user verbs and policies

    @precondition(lambda self: self.loaded)
    @rule(verb=st.sampled_from(["start", "stop", "restart"]))
    def user(self, verb: str) -> None:
        self.apply({"start": lc.Start(), "stop": lc.Stop(), "restart": lc.Restart()}[verb])

    @precondition(lambda self: self.loaded)
    @rule(reason=st.sampled_from(["health", "max-frozen"]))
    def policy_fails_it(self, reason: str) -> None:
        self.apply(lc.Fail(reason))

    @precondition(lambda self: self.loaded)
    @rule(reason=REASONS, thaw=st.booleans())
    def freeze_or_thaw(self, reason: str, thaw: bool) -> None:
        self.apply(lc.Thaw(reason) if thaw else lc.Freeze(reason))

    @precondition(lambda self: self.loaded)
    @rule()
    def supd_shutdown(self) -> None:
        self.apply(lc.Stop("supd shutdown", keep_wanted=True))

    @precondition(lambda self: self.loaded)
    @rule(alive=st.booleans(), same_boot=st.booleans())
    def supd_restarts(self, alive: bool, same_boot: bool) -> None:
        # As the daemon does it: a fresh Life from the file, then what
        # policy.resume decides from the record (the Life before) and /proc.
        old = self.life
        process = "adopt" if old.has_process and alive and same_boot else ("ended" if old.has_process else "none")
        plan = resume.decide(
            state=old.state.value, user_stopped=old.user_stopped,
            shutdown_stopped=old.state is S.INACTIVE and old.reason == "supd shutdown", restarts=old.restarts,
            recorded_boot="boot-1", current_boot="boot-1" if same_boot else "boot-2", process=process,
        )  # fmt: skip
        fresh = lc.Load(old.spec, old.enabled, None if old.spec is not None else "invalid")
        self.life = lc.step(lc.Life(), fresh, self.now).life
        self.apply(
            lc.Resumed(
                plan.action, plan.why, restarts=plan.restarts, user_stopped=plan.user_stopped,
                last_exit=old.last_exit, new_boot=not same_boot, error=old.error,
            )
        )  # fmt: skip
        if plan.action == "adopt" and self.life.spec is not None:
            self.apply(lc.Adopted(pid=4242))

    @precondition(lambda self: self.loaded and not self.life.removed)
    @rule()
    def file_removed(self) -> None:
        self.apply(lc.Remove())

    # --- invariants

    @invariant()
    def every_state_has_a_reason(self) -> None:
        assert isinstance(self.life.reason, str) and self.life.reason

    @invariant()
    def error_exactly_without_a_definition(self) -> None:
        if self.life.state is S.ERROR:
            assert self.life.spec is None
        if self.loaded and self.life.spec is None and not (self.life.has_process or self.life.spawning):
            assert self.life.state is S.ERROR

    @invariant()
    def failed_says_why(self) -> None:
        if self.life.state is S.FAILED:
            assert self.life.error

    @invariant()
    def processes_only_in_process_states(self) -> None:
        if self.life.has_process or self.life.spawning:
            assert self.life.state in lc.PROCESS_STATES
        if self.life.state in (S.RUNNING, S.FROZEN):
            assert self.life.has_process
        if self.life.state is S.STOPPING:
            assert self.life.stop_pending

    @invariant()
    def a_removed_unit_never_starts_again(self) -> None:
        if self.life.removed:
            assert not self.life.want_running


TestLifecycle = LifecycleMachine.TestCase
TestLifecycle.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
