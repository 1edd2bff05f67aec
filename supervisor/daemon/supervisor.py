"""The supervisor: one anyio task per unit, driving the unit state machine.

A unit's task is the only code that starts, watches and stops that unit's
process; commands (API, reload, dependencies) only change what the unit
should be doing (`want_running`) and poke the task. That keeps every
transition in one place, in order, each with an event and a reason.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from supervisor.cgroups.driver import CgroupDriver, CgroupError, CgroupRef, ScopeSpec
from supervisor.daemon import logs as unit_logs
from supervisor.daemon.config import DaemonConfig
from supervisor.daemon.events import EventBus
from supervisor.daemon.spawnspec import build_spawn_spec, describe_spawn_error
from supervisor.daemon.unitdir import Loaded
from supervisor.daemon.unitrun import UnitRun
from supervisor.policy.restart import ExitStatus, should_restart
from supervisor.policy.state import UnitState
from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner, SpawnError
from supervisor.units.model import Unit
from supervisor.units.values import signal_name

log = structlog.get_logger()

# How long a SIGKILLed unit may take to disappear before we give up waiting
# for it (it is then in uninterruptible sleep; the cgroup still holds it).
KILL_GRACE = 10.0


class StartFailure(Exception):
    """The unit cannot be started; the message is shown in `supctl status`."""


class Supervisor:
    def __init__(
        self,
        config: DaemonConfig,
        spawner: Spawner,
        reaper: Reaper,
        driver: CgroupDriver | None,
        events: EventBus,
        prepare_rootfs: Callable[[Unit], Any] | None = None,
        cleanup_rootfs: Callable[[Unit], None] | None = None,
    ) -> None:
        self.config = config
        self.spawner = spawner
        self.reaper = reaper
        self.driver = driver
        self.events = events
        self.prepare_rootfs = prepare_rootfs
        self.cleanup_rootfs = cleanup_rootfs
        self.units: dict[str, UnitRun] = {}
        self._tg: TaskGroup | None = None
        # Broadcast "some unit changed state" (dependency waits use it).
        self._changed = anyio.Event()
        # Set on a live-restore shutdown: tasks leave their processes running.
        self.detaching = False
        self.on_state_change: Callable[[UnitRun], None] | None = None
        # Started beside every running process and cancelled when it ends:
        # health checks, memory-threshold freezes (see daemon/health.py, freezer.py).
        self.run_watchers: list[Callable[[Supervisor, UnitRun, Unit], Awaitable[None]]] = []

    # ----------------------------------------------------------- transitions
    def set_state(self, u: UnitRun, state: UnitState, reason: str, *, again: bool = False, **fields: Any) -> None:
        """Move `u` to `state` with an event; `again` re-announces an unchanged
        state (a unit file that is invalid in a new way)."""
        if u.state != state or again:
            u.state = state
            u.since = time.time()
            self.events.emit(u.name, state.value, reason, **fields)
        self._broadcast()
        if self.on_state_change is not None:
            self.on_state_change(u)

    def _broadcast(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # -------------------------------------------------------------- loading
    def attach(self, tg: TaskGroup) -> None:
        self._tg = tg

    def add(self, loaded: Loaded) -> UnitRun:
        assert self._tg is not None
        u = UnitRun(name=loaded.name, file=loaded.file, unit=loaded.unit, error=loaded.error)
        u.reset_policy()
        self.units[u.name] = u
        if loaded.error is not None:
            self.set_state(u, UnitState.ERROR, "invalid unit file", error=loaded.error)
        else:
            assert loaded.unit is not None
            u.want_running = loaded.unit.unit.enabled
            self.events.emit(u.name, "loaded", "unit file", file=str(loaded.file))
        self._tg.start_soon(self._unit_task, u, name=f"unit {u.name}")
        return u

    async def redefine(self, u: UnitRun, loaded: Loaded) -> str:
        """Apply a changed unit file. Returns what was done (for reload replies)."""
        old = u.unit
        if loaded.error is not None:
            u.error = loaded.error
            if u.active:
                await self.stop(u, reason="invalid unit file")
            u.unit = None
            u.want_running = False
            self.set_state(u, UnitState.ERROR, "invalid unit file", error=loaded.error, again=True)
            u.poke()
            return "error"
        new = loaded.unit
        assert new is not None
        u.error = None
        u.file = loaded.file
        if old is not None and u.active and old.differs_only_in_resources(new) and u.cgroup is not None:
            changed = [k for k in vars(new.resources) if getattr(new.resources, k) != getattr(old.resources, k)]
            u.unit = new
            warnings = await self.driver.update(u.cgroup, new.resources) if self.driver else []
            u.warnings = tuple(warnings)
            self.events.emit(u.name, "updated", "resources changed live", changed=changed, warnings=warnings)
            return "updated"
        was_running = u.active
        if was_running:
            await self.stop(u, reason="unit file changed", keep_wanted=False)
            await self._wait_inactive(u)
        u.unit = new
        u.reset_policy()
        u.want_running = new.unit.enabled or was_running
        if u.state in (UnitState.ERROR, UnitState.FAILED):
            self.set_state(u, UnitState.INACTIVE, "unit file changed")
        else:
            self.events.emit(u.name, "reloaded", "unit file changed")
        u.poke()
        return "restarted" if was_running else "changed"

    async def remove(self, u: UnitRun) -> None:
        u.removed = True
        u.want_running = False
        if u.active:
            await self.stop(u, reason="unit file removed")
            await self._wait_inactive(u)
        u.poke()
        self.units.pop(u.name, None)
        self.events.emit(u.name, "removed", "unit file removed")

    async def _wait_inactive(self, u: UnitRun) -> None:
        while u.active:
            await self.wait_changed()

    # ------------------------------------------------------------ commands
    def start(self, u: UnitRun) -> None:
        """A user start: also the only way out of `failed`."""
        if u.unit is None:
            return
        u.want_running = True
        u.user_stopped = False
        if u.state == UnitState.FAILED:
            u.reset_policy()
            self.set_state(u, UnitState.INACTIVE, "user")
        elif u.start_limit is not None:
            u.start_limit.reset()
        u.poke()

    async def stop(self, u: UnitRun, reason: str = "user", keep_wanted: bool = False) -> None:
        u.want_running = keep_wanted
        u.stop_reason = reason
        u.user_stopped = reason == "user"
        if u.active:
            u.stop_requested.set()
        elif u.state == UnitState.RESTARTING:
            self.set_state(u, UnitState.INACTIVE, reason)
        u.poke()

    async def fail(self, u: UnitRun, reason: str) -> None:
        """Stop the running process and treat its end as a failure with `reason`
        ("health", "max-frozen", ...): the unit's [restart] policy decides what next."""
        if not u.active:
            return
        u.fail_reason = reason
        u.stop_reason = reason
        u.stop_requested.set()

    async def restart(self, u: UnitRun) -> None:
        # Stop for good, then start: a stop that keeps the unit wanted would let
        # the unit task start it again before we see it go inactive (and a supd
        # shutdown in between would start it again).
        if u.active:
            await self.stop(u, reason="user restart")
            await self._wait_inactive(u)
        self.start(u)

    async def freeze(self, u: UnitRun, reason: str = "user") -> None:
        if u.cgroup is None or self.driver is None:
            raise StartFailure(f"{u.name} has no running process to freeze")
        await self.driver.freeze(u.cgroup)
        u.frozen, u.freeze_reason = True, reason
        self.set_state(u, UnitState.FROZEN, reason)

    async def thaw(self, u: UnitRun, reason: str = "user") -> None:
        if u.cgroup is None or self.driver is None:
            raise StartFailure(f"{u.name} has no running process to thaw")
        await self.driver.thaw(u.cgroup)
        u.frozen, u.freeze_reason = False, None
        self.set_state(u, UnitState.RUNNING, "thaw " + reason if reason != "user" else "user")

    # ----------------------------------------------------------- unit task
    async def _unit_task(self, u: UnitRun) -> None:
        while not u.removed:
            wake = u.new_wake()
            if u.want_running and u.unit is not None and u.state not in (UnitState.FAILED, UnitState.ERROR):
                await self._run_with_policy(u)
                continue
            await wake.wait()

    async def _run_with_policy(self, u: UnitRun) -> None:
        """Start the unit once and handle its end by the restart policy."""
        assert u.unit is not None and u.backoff is not None and u.start_limit is not None
        unit = u.unit
        if not await self._wait_dependencies(u):
            return
        now = time.monotonic()
        if u.adopt_pid is None and not u.start_limit.allow(now):
            u.want_running = False
            u.error = (
                f"start limit hit: started more than {unit.restart.limit_burst} times in "
                f"{unit.restart.limit_interval:g}s; `supctl start {u.name}` clears it"
            )
            self.set_state(u, UnitState.FAILED, "start-limit", error=u.error)
            self._stop_dependents(u)
            return
        if u.adopt_pid is not None:
            status = await self._run_adopted(u, unit)
        else:
            status = await self._run_once(u, unit)
        if status is None:  # could not start
            self._stop_dependents(u)
            return
        u.last_exit = status
        if self.detaching:
            return
        user_stop = u.stop_requested.is_set() and u.fail_reason is None
        if u.fail_reason is not None:
            status = status.because(u.fail_reason)
            u.last_exit = status
            u.fail_reason = None
        u.stop_requested = anyio.Event()
        if user_stop:
            self.set_state(u, UnitState.INACTIVE, u.stop_reason, **_exit_fields(status))
            self._stop_dependents(u)
            return
        if u.want_running and should_restart(unit.restart.policy, status, user_stop=False):
            delay = u.backoff.exited(time.monotonic())
            u.restarts += 1
            self.set_state(u, UnitState.RESTARTING, status.reason, delay=round(delay, 3), **_exit_fields(status))
            wake = u.new_wake()
            with anyio.move_on_after(delay):
                await wake.wait()
            if not u.want_running and u.state == UnitState.RESTARTING:
                self.set_state(u, UnitState.INACTIVE, u.stop_reason)
            return
        u.want_running = False
        self.set_state(u, UnitState.EXITED, status.reason, **_exit_fields(status))
        self._stop_dependents(u)

    async def _run_once(self, u: UnitRun, unit: Unit) -> ExitStatus | None:
        """Spawn, place in the cgroup, go, supervise, clean up. None = cannot start."""
        u.active = True
        u.frozen, u.freeze_reason = False, None
        self.set_state(u, UnitState.STARTING, "restart" if u.restarts else "start")
        ref: CgroupRef | None = None
        warnings: list[str] = []
        try:
            try:
                plan = None
                if unit.rootfs is not None and self.prepare_rootfs is not None:
                    # Importing an image on first use unpacks tarballs: keep it off the loop.
                    plan = await anyio.to_thread.run_sync(self.prepare_rootfs, unit)
                spec = build_spawn_spec(unit, plan)
                log_fd = unit_logs.open_for_unit(self.config.state_dir, unit.name)
                null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    pending = await self.spawner.start(spec, stdio=(null_fd, log_fd, log_fd))
                finally:
                    os.close(log_fd)
                    os.close(null_fd)
                try:
                    # Place the process in its scope while it sets itself up:
                    # the first cgroup move after a quiet spell waits for an RCU
                    # grace period (~10 ms here), which this overlaps with the
                    # mounts. It still cannot exec before both are done.
                    ready_error: list[BaseException] = []
                    create_error: list[BaseException] = []

                    async def ready() -> None:
                        try:
                            await pending.wait_ready()
                        except SpawnError as e:
                            ready_error.append(e)

                    async with anyio.create_task_group() as setup:
                        setup.start_soon(ready)
                        if self.driver is not None:
                            try:
                                ref, warnings = await self.driver.create(ScopeSpec.for_unit(unit), pending.pid)
                            except (CgroupError, OSError) as e:
                                create_error.append(e)
                    for error in create_error + ready_error:
                        raise error
                    if ref is not None and self.driver is not None:
                        u.cgroup, u.warnings = ref, tuple(warnings)
                        for w in warnings:
                            log.warning("cgroup_limit_not_applied", unit=unit.name, warning=w)
                        u.oom_kills_at_start = self.driver.stats(ref).oom_kills or 0
                    await pending.go()
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await pending.abort()
                    raise
            except (SpawnError, CgroupError, StartFailure, OSError, ValueError) as e:
                u.error = describe_spawn_error(unit, str(e)) if isinstance(e, SpawnError) else str(e)
                u.want_running = False
                with anyio.CancelScope(shield=True):
                    await self._cleanup(u, unit, ref)
                self.set_state(u, UnitState.FAILED, "cannot start", error=u.error)
                return None
            except Exception as e:  # a bug must not take the daemon down with it
                log.exception("unit_start_crashed", unit=unit.name)
                u.error = f"internal error: {e!r}"
                u.want_running = False
                with anyio.CancelScope(shield=True):
                    await self._cleanup(u, unit, ref)
                self.set_state(u, UnitState.FAILED, "cannot start", error=u.error)
                return None
            u.pid = pending.pid
            u.error = None
            u.started_at = time.monotonic()
            assert u.backoff is not None
            u.backoff.started(u.started_at)
            self.set_state(u, UnitState.RUNNING, "started", pid=u.pid)
            return await self._supervise_to_end(u, unit, pending.pid, ref)
        finally:
            self._run_over(u)

    async def _run_adopted(self, u: UnitRun, unit: Unit) -> ExitStatus:
        """Supervise a process a previous supd started (live-restore, or a crash of
        supd): its pid, start time and scope were checked by the caller. It is not
        our child, so its exit is seen through a pidfd but its status is unknown."""
        pid, u.adopt_pid = u.adopt_pid, None
        assert pid is not None
        u.active = True
        try:
            u.pid = pid
            u.started_at = time.monotonic()
            assert u.backoff is not None
            u.backoff.started(u.started_at)
            if u.cgroup is not None and self.driver is not None:
                try:
                    u.oom_kills_at_start = self.driver.stats(u.cgroup).oom_kills or 0
                except (CgroupError, OSError):
                    pass
            self.set_state(u, UnitState.RUNNING, "adopted", pid=pid)
            if u.adopt_since is not None:  # uptime counts from the real start, not the adoption
                u.since, u.adopt_since = u.adopt_since, None
            if u.cgroup is not None and self.driver is not None and self.driver.stats(u.cgroup).frozen:
                u.frozen = True
                u.freeze_reason = u.freeze_reason or "user"
                self.set_state(u, UnitState.FROZEN, u.freeze_reason)
            return await self._supervise_to_end(u, unit, pid, u.cgroup)
        finally:
            self._run_over(u)

    async def _supervise_to_end(self, u: UnitRun, unit: Unit, pid: int, ref: CgroupRef | None) -> ExitStatus:
        status = await self._supervise(u, unit, pid)
        if self.detaching:  # live-restore: leave the process and its scope as they are
            return status
        with anyio.CancelScope(shield=True):
            status = self._classify(u, status)
            await self._cleanup(u, unit, ref)
        return status

    def _run_over(self, u: UnitRun) -> None:
        if not self.detaching:
            u.pid = None
            u.cgroup = None
            u.frozen = False
        u.active = False
        self._broadcast()

    async def _supervise(self, u: UnitRun, unit: Unit, pid: int) -> ExitStatus:
        """Wait for the process to exit, or for a stop request and then for the exit."""
        result: list[ExitStatus] = []
        exited = anyio.Event()

        async def wait_exit() -> None:
            result.append(await self.reaper.wait(pid))
            exited.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_exit)
            watchers = anyio.CancelScope()

            async def run_watchers() -> None:
                with watchers:
                    async with anyio.create_task_group() as wg:
                        for watcher in self.run_watchers:
                            wg.start_soon(watcher, self, u, unit)

            tg.start_soon(run_watchers)
            async with anyio.create_task_group() as race:

                async def on_exit() -> None:
                    await exited.wait()
                    race.cancel_scope.cancel()

                async def on_stop() -> None:
                    await u.stop_requested.wait()
                    race.cancel_scope.cancel()

                race.start_soon(on_exit)
                race.start_soon(on_stop)
            watchers.cancel()
            if not exited.is_set():
                with anyio.CancelScope(shield=True):
                    await self._stop_process(u, unit, pid, exited)
        return result[0]

    async def _stop_process(self, u: UnitRun, unit: Unit, pid: int, exited: anyio.Event) -> None:
        self.set_state(u, UnitState.STOPPING, u.stop_reason)
        if u.frozen and u.cgroup is not None and self.driver is not None:
            # A frozen process cannot act on a signal: thaw first, then signal.
            await self.driver.thaw(u.cgroup)
            u.frozen = False
        self._signal_main(unit, pid, unit.stop.signal)
        with anyio.move_on_after(unit.stop.timeout):
            await exited.wait()
        if exited.is_set():
            return
        self.events.emit(u.name, "kill", "stop timeout", signal="SIGKILL", timeout=unit.stop.timeout)
        if u.cgroup is not None and self.driver is not None:
            await self.driver.kill(u.cgroup, signal.SIGKILL)
        else:
            _kill_quietly(pid, signal.SIGKILL)
        with anyio.move_on_after(KILL_GRACE):
            await exited.wait()

    def _signal_main(self, unit: Unit, pid: int, sig: int) -> None:
        # A container's pid 1 (its init or command) owns its processes, as with
        # docker stop; a plain unit's whole process group gets the signal, like
        # systemd's KillMode=control-group does for the main and its helpers.
        if unit.rootfs is None:
            try:
                os.killpg(pid, sig)
                return
            except OSError:
                pass
        _kill_quietly(pid, sig)

    def _classify(self, u: UnitRun, status: ExitStatus) -> ExitStatus:
        """Turn a SIGKILL into `oom-kill` when the scope's OOM counter moved."""
        if u.cgroup is None or self.driver is None or status.signal != signal.SIGKILL:
            return status
        try:
            kills = self.driver.stats(u.cgroup).oom_kills or 0
        except (CgroupError, OSError):
            return status
        if kills > u.oom_kills_at_start:
            return ExitStatus(code=None, signal=status.signal, reason="oom-kill")
        return status

    async def _cleanup(self, u: UnitRun, unit: Unit, ref: CgroupRef | None) -> None:
        if ref is not None and self.driver is not None:
            try:
                await self.driver.remove(ref)
            except (CgroupError, OSError) as e:
                log.warning("cgroup_remove_failed", unit=unit.name, error=str(e))
        if unit.rootfs is not None and self.cleanup_rootfs is not None:
            try:
                self.cleanup_rootfs(unit)
            except OSError as e:
                log.warning("rootfs_cleanup_failed", unit=unit.name, error=str(e))

    # -------------------------------------------------------- dependencies
    async def _wait_dependencies(self, u: UnitRun) -> bool:
        """Start what `u` requires and wait until everything it is after runs.
        Returns False if `u` should not start after all (stopped meanwhile)."""
        assert u.unit is not None
        deps = tuple(dict.fromkeys(u.unit.unit.after + u.unit.unit.requires))
        if not deps:
            return True
        for name in u.unit.unit.requires:
            dep = self.units.get(name)
            if dep is not None and not dep.want_running and dep.unit is not None:
                self.events.emit(name, "start", f"required by {u.name}")
                self.start(dep)
        announced = False
        while True:
            if not u.want_running or u.removed:
                return False
            waiting = [n for n in deps if not self._dependency_ready(n)]
            if not waiting:
                return True
            failed = [n for n in u.unit.unit.requires if self._dependency_failed(n)]
            if failed:
                u.want_running = False
                self.set_state(u, UnitState.FAILED, "dependency", error=f"required unit {failed[0]} is not running")
                return False
            if not announced:
                self.set_state(u, UnitState.STARTING, "waiting for " + ", ".join(waiting))
                announced = True
            wake = u.wake
            async with anyio.create_task_group() as tg:

                async def changed() -> None:
                    await self.wait_changed()
                    tg.cancel_scope.cancel()

                async def poked() -> None:
                    await wake.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(changed)
                tg.start_soon(poked)
            u.new_wake()

    def _dependency_ready(self, name: str) -> bool:
        dep = self.units.get(name)
        if dep is None:
            return True  # unknown names are unit-file errors, reported by deps.check
        if dep.state not in (UnitState.RUNNING, UnitState.FROZEN):
            return False
        return dep.unit is None or dep.unit.health is None or dep.health == "healthy"

    def _dependency_failed(self, name: str) -> bool:
        dep = self.units.get(name)
        return dep is not None and dep.state in (UnitState.FAILED, UnitState.ERROR)

    def _stop_dependents(self, u: UnitRun) -> None:
        for other in self.units.values():
            if other.unit is not None and u.name in other.unit.unit.requires and (other.active or other.want_running):
                self.events.emit(other.name, "stop", f"requires {u.name}")
                other.want_running = False
                other.stop_reason = f"requires {u.name}"
                if other.active:
                    other.stop_requested.set()
                other.poke()


def _exit_fields(status: ExitStatus) -> dict[str, Any]:
    """Exit figures for events, with the signal by name (as in status objects)."""
    sig = None if status.signal is None else signal_name(int(status.signal))
    return {"code": status.code, "signal": sig}


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
