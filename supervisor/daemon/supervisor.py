"""The supervisor: one anyio task per unit, the only writer of that unit's state.

Everything else — the API, reload, restore, health checks, the freezer
policies, dependencies — sends the unit's task a `Command` and awaits it
(`Supervisor.start/stop/restart/freeze/thaw/fail/redefine/remove`). The task
applies each one through `policy.lifecycle.step` (the one place a state
changes), in order, with an event, and carries out the actions it returns.
A freeze and a stop can therefore never race: the second one sees the first's
result.

Faults stay with their unit: an unexpected exception in a unit's work is
logged, its process and scope are cleaned up, and the unit goes to `failed`
with the message; the task then waits for a user start. A start cancelled
halfway (supd shutting down) cleans up in a shielded scope on every path.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from supervisor import failpoints
from supervisor.cgroups import tree as cgroup_tree
from supervisor.cgroups.driver import CgroupDriver, CgroupError, CgroupRef, ScopeSpec
from supervisor.daemon import logs as unit_logs
from supervisor.daemon.config import DaemonConfig
from supervisor.daemon.etcfiles import EtcFiles
from supervisor.daemon.events import EventBus
from supervisor.daemon.networking import NetworkError, Networks, uses_cni
from supervisor.daemon.spawnspec import build_spawn_spec, describe_spawn_error
from supervisor.seccomp.unitfilter import filter_for as seccomp_filter_for
from supervisor.daemon.unitdir import Loaded
from supervisor.daemon.unitrun import Command, UnitRun
from supervisor.policy import lifecycle as lc
from supervisor.policy.restart import ExitStatus
from supervisor.policy.state import UnitState
from supervisor.rootfs import hostdev
from supervisor.rootfs.errors import RootfsError
from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import LogRequest, Spawner, SpawnError, wait_relay
from supervisor.rootfs.oci import ImageConfig
from supervisor.units.imageconfig import effective_unit
from supervisor.units.model import Unit
from supervisor.units.values import signal_name

log = structlog.get_logger()

# How long a SIGKILLed unit may take to disappear before the stop is reported
# stalled (a frozen parent cgroup, a process in uninterruptible sleep); the
# kill is then retried, STALL_RETRY_MAX apart at most.
KILL_GRACE = 10.0
STALL_RETRY_MAX = 30.0
IMAGE_THREADS = 2  # concurrent image imports (API and unit starts); more wait their turn
# Errors a start can meet that are the unit's (its file, its image, the kernel
# refusing its limits) rather than supd's bugs.
START_ERRORS = (SpawnError, CgroupError, OSError, ValueError)


class StartFailure(Exception):
    """The unit cannot be started; the message is shown in `supctl status`."""


class Refused(StartFailure):
    """The lifecycle refused a command in this state (HTTP 409)."""


@dataclass
class _Run:
    """The process the unit's task is supervising right now."""

    unit: Unit
    pid: int
    ref: CgroupRef | None
    exited: anyio.Event
    tg: TaskGroup
    stopping: bool = False


class Supervisor:
    def __init__(
        self,
        config: DaemonConfig,
        spawner: Spawner,
        reaper: Reaper,
        driver: CgroupDriver | None,
        events: EventBus,
        prepare_rootfs: Callable[[Unit], tuple[Any, ImageConfig | None]] | None = None,
        cleanup_rootfs: Callable[[Unit], None] | None = None,
        networks: Networks | None = None,
        image_config: Callable[[Unit], ImageConfig | None] | None = None,
        etc_files: EtcFiles | None = None,
    ) -> None:
        self.config = config
        self.spawner = spawner
        self.reaper = reaper
        # Image work (API imports, and starts of units whose rootfs is an image
        # that may be imported on first use) runs on these few threads only.
        self.image_threads = anyio.CapacityLimiter(IMAGE_THREADS)
        self.driver = driver
        self.events = events
        self.prepare_rootfs = prepare_rootfs
        self.cleanup_rootfs = cleanup_rootfs
        # CNI networks of container units (None: every container keeps the host's)
        self.networks = networks
        # The config of a unit's image (blocking: reads the image store), whose
        # Entrypoint, Cmd, Env... fill what the unit file leaves out.
        self.image_config = image_config
        # a container's /etc/hosts, resolv.conf and hostname (daemon/etcfiles.py)
        self.etc_files = etc_files
        # where a unit's output goes unless its [exec].log_driver says (daemon/logs.py)
        self.log_driver = unit_logs.default_driver(config.log_driver)
        self.units: dict[str, UnitRun] = {}
        self._tg: TaskGroup | None = None
        # Broadcast "some unit changed state" (dependency waits use it).
        self._changed = anyio.Event()
        # Set on a live-restore shutdown: tasks leave their processes running.
        self.detaching = False
        self.on_state_change: Callable[[UnitRun], None] | None = None
        # Awaited with (unit, pid, scope) just before a process may exec: the
        # record that lets a supd killed right after it re-adopt the process.
        self.on_launch: Callable[[UnitRun, int, CgroupRef | None], Awaitable[None]] | None = None
        # Started beside every running process and cancelled when it ends:
        # health checks, memory-threshold freezes (see daemon/health.py, freezer.py).
        self.run_watchers: list[Callable[[Supervisor, UnitRun, Unit], Awaitable[None]]] = []
        # The id block a [rootfs].userns = "auto" unit holds (daemon/userns.py), by unit name.
        self.userns_of: Callable[[str], Any] = lambda _name: None
        # Pulls a unit's registry/archive image per [rootfs].pull before its
        # rootfs is prepared (daemon/main.py; rootfs/pull.py). Raises StartFailure.
        self.ensure_image: Callable[[Unit], Awaitable[None]] | None = None

    # ----------------------------------------------------------- transitions
    def _apply(self, u: UnitRun, event: lc.Event) -> lc.Step:
        """Apply one lifecycle event (refusals raise Refused) and commit it."""
        step = lc.step(u.life, event, time.monotonic())
        if step.refused is not None:
            raise Refused(f"{u.name} {step.refused}")
        self._commit(u, step)
        return step

    def _commit(self, u: UnitRun, step: lc.Step) -> None:
        before, u.life = u.life, step.life
        fields = _event_fields(step)
        if step.life.state is not before.state or step.again:
            if not (before.state in _ACTIVE and step.life.state in _ACTIVE):
                u.since = time.time()  # a freeze or thaw is no new run: uptime counts on
            if step.life.state in (UnitState.FAILED, UnitState.ERROR) and step.life.error:
                fields.setdefault("error", step.life.error)
            self.events.emit(u.name, step.life.state.value, step.life.reason, **fields)
        for action in step.actions:
            if isinstance(action, lc.Announce):
                self.events.emit(u.name, action.event, action.reason, **fields)
            elif isinstance(action, lc.StopDependents):
                self._stop_dependents(u)
        self._broadcast()
        if self.on_state_change is not None:
            try:
                self.on_state_change(u)
            except Exception:  # a record that cannot be written must not stop the unit
                log.exception("state_record_failed", unit=u.name)

    def resume(self, u: UnitRun, event: lc.Resumed) -> None:
        """What a starting supd found for a unit it has just added: the unit's
        task applies it as its first step, before it looks at anything else."""
        u.resumed = event

    def _broadcast(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def notify_changed(self) -> None:
        """Something units wait on changed without a state change (health)."""
        self._broadcast()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # -------------------------------------------------------------- loading
    def attach(self, tg: TaskGroup) -> None:
        self._tg = tg

    def add(self, loaded: Loaded) -> UnitRun:
        assert self._tg is not None
        u = UnitRun(name=loaded.name, file=loaded.file, unit=loaded.unit)
        # A file that comes back while its old unit is still stopping: the new
        # unit waits for the old one to be gone (same scope name).
        predecessor = self.units.get(u.name)
        self.units[u.name] = u
        spec = loaded.unit.restart if loaded.unit is not None else None
        enabled = loaded.unit.unit.enabled if loaded.unit is not None else False
        step = lc.step(u.life, lc.Load(spec, enabled, loaded.error), time.monotonic())
        if loaded.error is None:
            u.life = step.life
            self.events.emit(u.name, "loaded", "unit file", file=str(loaded.file))
        else:
            self._commit(u, step)
        self._tg.start_soon(self._unit_task, u, predecessor, name=f"unit {u.name}")
        return u

    async def redefine(self, u: UnitRun, loaded: Loaded) -> str:
        """Apply a changed unit file. Returns what was done (for reload replies):
        "error", "updated", "update-refused: <why>", "restarted" or "changed"."""
        cmd = await self._send(u, Command("redefine", loaded=loaded))
        return cmd.result

    async def remove(self, u: UnitRun, *, wait: bool = True) -> None:
        """Forget a unit whose file is gone (its task stops the process first)."""
        await self._send(u, Command("remove"))
        if wait:
            await u.gone.wait()

    # ------------------------------------------------------------ commands
    async def _send(self, u: UnitRun, cmd: Command) -> Command:
        if u.gone.is_set():
            raise Refused(f"{u.name} is being removed")
        u.inbox.append(cmd)
        u.poke()
        await cmd.done.wait()
        if cmd.error is not None:
            raise cmd.error
        return cmd

    async def event(self, u: UnitRun, event: lc.Event) -> lc.Step:
        """Send a lifecycle event to the unit's task; returns the applied step
        (raises Refused with the reason when the lifecycle refuses it)."""
        cmd = await self._send(u, Command("event", event=event))
        assert cmd.step is not None
        return cmd.step

    async def start(self, u: UnitRun) -> None:
        """A user start: also the only way out of `failed`."""
        await self.event(u, lc.Start())

    async def stop(self, u: UnitRun, reason: str = "user", keep_wanted: bool = False) -> None:
        await self.event(u, lc.Stop(reason, keep_wanted))

    async def fail(self, u: UnitRun, reason: str) -> None:
        """Stop the running process and treat its end as a failure with `reason`
        ("health", "max-frozen", ...): the unit's [restart] policy decides what next."""
        try:
            await self.event(u, lc.Fail(reason))
        except Refused:
            pass  # nothing running any more

    async def restart(self, u: UnitRun) -> None:
        await self.event(u, lc.Restart())

    async def freeze(self, u: UnitRun, reason: str = "user") -> None:
        await self.event(u, lc.Freeze(reason))

    async def thaw(self, u: UnitRun, reason: str = "user") -> None:
        await self.event(u, lc.Thaw(reason))

    # ----------------------------------------------------------- unit task
    async def _unit_task(self, u: UnitRun, predecessor: UnitRun | None = None) -> None:
        if predecessor is not None:
            await predecessor.gone.wait()
        try:
            if u.resumed is not None:
                event, u.resumed = u.resumed, None
                self._commit(u, lc.step(u.life, event, time.monotonic()))
            while True:
                try:
                    await self._drive(u)
                    return
                except Exception as e:  # contained: the unit fails, supd carries on
                    try:
                        await self._contain(u, e)
                    except Exception:  # even a failed clean-up must not reach the daemon's task group
                        log.exception("unit_containment_failed", unit=u.name)
                        await anyio.sleep(1.0)
        finally:
            u.gone.set()
            for cmd in u.inbox:
                cmd.error = Refused(f"{u.name} was removed")
                cmd.done.set()
            u.inbox.clear()
            if u.life.removed and self.units.get(u.name) is u:  # not at a shutdown
                del self.units[u.name]
                self.events.emit(u.name, "removed", "unit file removed")
                self._broadcast()

    async def _contain(self, u: UnitRun, e: Exception) -> None:
        log.exception("unit_task_crashed", unit=u.name)
        with anyio.CancelScope(shield=True):
            ref = u.cgroup
            if ref is not None and self.driver is not None and not self.detaching:
                try:
                    await self.driver.remove(ref)
                except Exception as cleanup_error:
                    log.warning("cgroup_remove_failed", unit=u.name, error=str(cleanup_error))
            elif u.pid is not None:
                _kill_quietly(u.pid, signal.SIGKILL)
            if u.unit is not None:
                await self._forget_etc_files(u.unit)
            if u.unit is not None and u.unit.rootfs is not None and self.cleanup_rootfs is not None:
                try:
                    await anyio.to_thread.run_sync(self.cleanup_rootfs, u.unit)
                except Exception as cleanup_error:
                    log.warning("rootfs_cleanup_failed", unit=u.name, error=str(cleanup_error))
            if not self.detaching:
                await self._disconnect(u.name)
        u.pid, u.cgroup, u.frozen = None, None, False
        if u.next_unit is not None:
            u.unit, u.next_unit = u.next_unit[0], None
        self._commit(u, lc.step(u.life, lc.Crashed(f"internal error: {e!r}"), time.monotonic()))
        for cmd in list(u.inbox):  # whatever was asked meanwhile is looked at afresh
            if cmd.done.is_set():
                u.inbox.remove(cmd)

    async def _drive(self, u: UnitRun) -> None:
        while True:
            if u.life.removed and not u.active:
                return
            now = time.monotonic()
            if u.adopt_pid is not None and u.unit is not None:
                await self._run_adopted(u, u.unit)
                continue
            if u.life.due(now) and u.unit is not None:
                await self._run(u, u.unit)
                continue
            timeout = float("inf")
            if u.life.state is UnitState.RESTARTING and u.life.retry_at is not None:
                timeout = max(0.0, u.life.retry_at - now)
            cmd = await self._next_command(u, timeout)
            if cmd is not None:
                await self._handle(u, cmd, None)

    async def _next_command(self, u: UnitRun, timeout: float = float("inf"), until: anyio.Event | None = None) -> Command | None:
        """The next command, or None when `timeout` passed or `until` is set."""
        with anyio.move_on_after(timeout):
            while not u.inbox:
                if until is not None and until.is_set():
                    return None
                await u.new_wake().wait()
        return u.inbox.popleft() if u.inbox else None

    async def _handle(self, u: UnitRun, cmd: Command, run: _Run | None) -> None:
        try:
            if cmd.kind == "event":
                assert cmd.event is not None
                cmd.step = await self._event_now(u, cmd.event, run)
            elif cmd.kind == "redefine":
                cmd.result = await self._redefine_now(u, cmd.loaded, run)
            elif cmd.kind == "remove":
                cmd.step = await self._event_now(u, lc.Remove(), run)
        except (StartFailure, CgroupError, OSError) as e:
            cmd.error = e
        except Exception as e:
            cmd.error = StartFailure(f"{u.name}: internal error: {e!r}")
            raise
        finally:
            cmd.done.set()

    async def _event_now(self, u: UnitRun, event: lc.Event, run: _Run | None) -> lc.Step:
        """Apply an event in the unit's task. Freeze and thaw act on the kernel
        first: if that fails the state stays as it was."""
        step = lc.step(u.life, event, time.monotonic())
        if step.refused is not None:
            raise Refused(f"{u.name} {step.refused}")
        for action in step.actions:
            if isinstance(action, (lc.FreezeProcess, lc.ThawProcess)):
                ref = run.ref if run is not None else u.cgroup
                if ref is None or self.driver is None:
                    raise Refused(f"{u.name} has no cgroup to {'freeze' if isinstance(action, lc.FreezeProcess) else 'thaw'}")
                if isinstance(action, lc.FreezeProcess):
                    await self.driver.freeze(ref)
                    u.frozen = True
                else:
                    await self.driver.thaw(ref)
                    u.frozen = False
        self._commit(u, step)
        if run is not None and lc.SignalStop() in step.actions:
            self._begin_stop(u, run)
        return step

    async def _redefine_now(self, u: UnitRun, loaded: Loaded, run: _Run | None) -> str:
        old, new = u.unit, loaded.unit
        u.file = loaded.file
        if run is not None and old is not None and new is not None and old.differs_only_in_resources(new):
            return await self._update_live(u, old, new, run)
        if new is None:
            event: lc.Event = lc.Redefine(None, False, loaded.error)
        else:
            event = lc.Redefine(new.restart, new.unit.enabled, None, restart_needed=True)
        await self._event_now(u, event, run)
        if run is not None:
            u.next_unit = (new,)  # the running process ends on the definition it started with
        else:
            u.unit = new
        if new is None:
            return "error"
        return "restarted" if run is not None else "changed"

    async def _update_live(self, u: UnitRun, old: Unit, new: Unit, run: _Run) -> str:
        """Resources-only change to a running unit: applied in place. A refusal
        (EBUSY lowering memory_max below usage, EINVAL, ERANGE, a refused systemd
        property) leaves the old limits in force and says so."""
        changed = tuple(k for k in vars(new.resources) if getattr(new.resources, k) != getattr(old.resources, k))
        warnings: list[str] = []
        if self.driver is not None and run.ref is not None:
            try:
                await failpoints.ahit("driver.update", u.name)
                warnings = await self.driver.update(run.ref, new.resources)
                refused = [w for w in warnings if "refused by systemd" in w]
                if refused:  # the systemd driver skips a property systemd refuses: that is a refusal here
                    raise CgroupError(run.ref.scope, None, "; ".join(refused))
            except Exception as e:  # whatever the reason, the unit keeps running on its old limits
                error = f"{new.file}: [resources]: live update refused, old limits kept: {e}"
                try:  # some files may have been written before the refusal
                    await self.driver.update(run.ref, old.resources)
                except Exception as restore_error:
                    log.warning("cgroup_restore_limits_failed", unit=u.name, error=str(restore_error))
                self._apply(u, lc.UpdateRefused(error))
                return f"update-refused: {error}"
        u.unit = new
        u.warnings = tuple(warnings)
        self._apply(u, lc.UpdateApplied(changed, tuple(warnings)))
        return "updated"

    # ------------------------------------------------------------- running
    async def _run(self, u: UnitRun, unit: Unit) -> None:
        """Start the unit once (after its dependencies) and see it to its end."""
        if not await self._wait_dependencies(u, unit):
            return
        step = self._apply(u, lc.Launch())
        if lc.Spawn() not in step.actions:
            return
        started = await self._spawn(u, unit)
        if started is None:
            return
        pid, ref = started
        u.pid, u.started_at = pid, time.monotonic()
        self._apply(u, lc.Started(pid))
        # what ran: stop signal and health checks come from the image's config too
        await self._see_to_end(u, u.effective or unit, pid, ref)

    async def _see_to_end(self, u: UnitRun, unit: Unit, pid: int, ref: CgroupRef | None) -> None:
        status = await self._supervise(u, unit, pid, ref)
        if self.detaching:
            return
        with anyio.CancelScope(shield=True):
            status = self._classify(u, status)
            await self._cleanup(u, unit, ref)
            await self._log_exit(u, unit, status)
        u.pid, u.cgroup, u.frozen, u.started_at = None, None, False, None
        if u.next_unit is not None:  # a definition that waited for the old process to end
            u.unit, u.next_unit = u.next_unit[0], None
        self._apply(u, lc.Exited(status))

    def _log_driver(self, unit: Unit) -> str:
        return unit_logs.driver_of(unit.exec.log_driver, self.log_driver)

    async def _log_exit(self, u: UnitRun, unit: Unit, status: ExitStatus) -> None:
        """The run's exit marker, after its relay wrote the run's last line."""
        if u.log_relay is not None:
            await wait_relay(self.reaper, u.log_relay)
            u.log_relay = None
        unit_logs.write_marker(self.config.state_dir, unit.name, self._log_driver(unit), unit_logs.exited_text(status.reason))

    async def _spawn(self, u: UnitRun, unit: Unit) -> tuple[int, CgroupRef | None] | None:
        """Rootfs, spawn, cgroup, go. None (and state failed) when it cannot
        start. Whatever way it ends early — an error, a bug, a cancel — what was
        made (process, scope, mount point) is removed in a shielded scope."""
        ref: CgroupRef | None = None
        pending = None
        warnings: list[str] = []
        u.effective = None
        marked, log_driver = False, self._log_driver(unit)
        try:
            plan = None
            host_devices = self._host_devices(unit)
            network = None
            if self.networks is not None and uses_cni(unit):
                try:  # before anything is made: a taken port or a bad conflist costs nothing
                    network = self.networks.prepare(unit)
                except NetworkError as e:
                    raise StartFailure(str(e)) from None
            if unit.rootfs is not None and unit.rootfs.image is not None and self.ensure_image is not None:
                await self.ensure_image(unit)
            if unit.rootfs is not None and self.prepare_rootfs is not None:
                # Importing an image on first use unpacks tarballs: keep it off the
                # loop, and an image unit in the image threads, so a slow or
                # hostile image never holds the threads everything else uses.
                limiter = self.image_threads if unit.rootfs.image is not None else None
                plan, image = await anyio.to_thread.run_sync(self._prepare_rootfs, unit, limiter=limiter)
                u.rootfs_plan = plan
            else:
                image = None
            u.effective = effective_unit(unit, image)
            u.userns = self.userns_of(unit.name)
            etc_files = await self._prepare_etc_files(unit, u.userns)
            spec = build_spawn_spec(
                u.effective,
                plan,
                devices=tuple(d.node for d in host_devices),
                seccomp=seccomp_filter_for(unit),
                userns=u.userns,
                etc_files=etc_files,
            )
            await failpoints.ahit("spawn", unit.name)
            try:
                log_fd = unit_logs.open_sink(self.config.state_dir, unit.name, log_driver)
            except OSError as e:
                raise StartFailure(f"{unit.file}: [exec].log_driver = {log_driver!r}: {e.strerror or e}") from None
            null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                pending = await self.spawner.start(
                    spec, stdio=(null_fd, log_fd, log_fd), output=LogRequest(unit.name, log_driver)
                )
            finally:
                os.close(log_fd)
                os.close(null_fd)
            u.log_relay = pending.relay
            # Place the process in its scope while it sets itself up: the first
            # cgroup move after a quiet spell waits for an RCU grace period
            # (~10 ms here), which this overlaps with the mounts. It still
            # cannot exec before both are done.
            errors: list[BaseException] = []
            network_errors: list[BaseException] = []

            async def ready() -> None:
                try:
                    await pending.wait_ready()
                except SpawnError as e:
                    errors.append(e)

            async def connect() -> None:
                # CNI ADD on the new netns, beside the shim's own setup (both
                # end before the go); the plugins never touch its mounts.
                assert self.networks is not None and network is not None
                try:
                    u.network = await self.networks.attach(unit, network, pending.pid)
                except (NetworkError, OSError) as e:
                    network_errors.append(StartFailure(f"{unit.file}: [rootfs].network: {e}"))

            async with anyio.create_task_group() as setup:
                setup.start_soon(ready)
                if network is not None:
                    setup.start_soon(connect)
                if self.driver is not None:
                    try:
                        await failpoints.ahit("driver.create", unit.name)
                        scope = ScopeSpec.for_unit(unit, [d.rule() for d in host_devices])
                        ref, warnings = await self.driver.create(scope, pending.pid)
                    except (CgroupError, OSError) as e:
                        errors.insert(0, e)
            # the shim's or the scope's failure (a missing command...) is the
            # cause of whatever the network met beside it (a pid already gone)
            errors += network_errors
            if errors:
                raise errors[0]
            if ref is not None and self.driver is not None:
                u.cgroup, u.warnings = ref, tuple(warnings)
                for w in warnings:
                    log.warning("cgroup_limit_not_applied", unit=unit.name, warning=w)
                u.new_run_ooms(self.driver.stats(ref).oom_kills or 0)
            if self.on_launch is not None:
                await self.on_launch(u, pending.pid, ref)
            # before its go: no line of this run can come before its marker
            unit_logs.write_marker(self.config.state_dir, unit.name, log_driver, unit_logs.started_text(pending.pid))
            marked = True
            await pending.go()
            return pending.pid, ref
        except BaseException as e:
            with anyio.CancelScope(shield=True):
                await self._abort_start(u, unit, pending, ref)
            if isinstance(e, (StartFailure, *START_ERRORS)):
                message = describe_spawn_error(unit, str(e)) if isinstance(e, SpawnError) else str(e)
                if marked:  # its exec failed: the run that was marked started ends here
                    unit_logs.write_marker(self.config.state_dir, unit.name, log_driver, f"start failed: {message}")
                self._apply(u, lc.StartFailed(message))
                return None
            raise

    @staticmethod
    def _host_devices(unit: Unit) -> tuple[hostdev.HostDevice, ...]:
        """`[rootfs].devices` as found on the host (a few stat calls)."""
        try:
            return hostdev.resolve(unit)
        except RootfsError as e:
            raise StartFailure(str(e)) from None

    async def _prepare_etc_files(self, unit: Unit, userns: Any | None) -> dict[str, str] | None:
        if unit.rootfs is None or self.etc_files is None:
            return None
        owner = None if userns is None else (userns.uid, userns.gid)
        try:
            # a few file writes, ~1 ms where runtime_dir is on disk: off the loop
            return await anyio.to_thread.run_sync(self.etc_files.prepare, unit, owner)
        except OSError as e:
            raise StartFailure(f"{unit.file}: [rootfs]: write /etc files under {self.config.runtime_dir}: {e}") from None

    async def _readopt_etc_files(self, u: UnitRun, unit: Unit) -> None:
        """A re-adopted container's files, rewritten in place: its mounts still
        show the same inodes. (Its address comes back through set_address.)"""
        try:
            await self._prepare_etc_files(unit, u.userns)
        except StartFailure as e:
            log.warning("etc_files_readopt_failed", unit=unit.name, error=str(e))

    async def _forget_etc_files(self, unit: Unit) -> None:
        if unit.rootfs is None or self.etc_files is None:
            return
        try:
            await anyio.to_thread.run_sync(self.etc_files.forget, unit.name)
        except OSError as e:
            log.warning("etc_files_cleanup_failed", unit=unit.name, error=str(e))

    def _prepare_rootfs(self, unit: Unit) -> tuple[Any, ImageConfig | None]:
        """The rootfs plan and the image's config (blocking; one thread hop for both)."""
        failpoints.hit("rootfs.mount", unit.name)
        assert self.prepare_rootfs is not None
        return self.prepare_rootfs(unit)

    def _image_config(self, unit: Unit) -> ImageConfig | None:
        if unit.rootfs is None or unit.rootfs.image is None or self.image_config is None:
            return None
        return self.image_config(unit)

    async def _effective_of_adopted(self, unit: Unit) -> Unit:
        """An adopted process ran with what its image said when it started; the
        store still holds that image (by digest) unless it was re-imported."""
        try:
            image = await anyio.to_thread.run_sync(self._image_config, unit, limiter=self.image_threads)
            return effective_unit(unit, image)
        except (StartFailure, *START_ERRORS) as e:
            log.warning("adopted_unit_image_config_unavailable", unit=unit.name, error=str(e))
            return unit

    async def _abort_start(self, u: UnitRun, unit: Unit, pending: Any, ref: CgroupRef | None) -> None:
        """Undo a half-done start; every step on its own, none may stop the others."""
        if pending is not None:
            try:
                await pending.abort()
            except Exception as e:
                log.warning("spawn_abort_failed", unit=unit.name, error=str(e))
        if self.driver is not None and ref is not None:
            # Only a scope this start made: a create that fails cleans up after
            # itself, and a scope it refused (processes supd did not start)
            # must never be touched.
            try:
                await self.driver.remove(ref)
            except Exception as e:
                log.warning("cgroup_remove_failed", unit=unit.name, error=str(e))
        await self._forget_etc_files(unit)
        if unit.rootfs is not None and self.cleanup_rootfs is not None:
            try:
                await anyio.to_thread.run_sync(self.cleanup_rootfs, unit)
            except Exception as e:
                log.warning("rootfs_cleanup_failed", unit=unit.name, error=str(e))
        await self._disconnect(unit.name)
        u.cgroup, u.pid = None, None

    async def _run_adopted(self, u: UnitRun, unit: Unit) -> None:
        """Supervise a process a previous supd started (live-restore, or a crash of
        supd): its pid, start time and scope were checked by the caller. It is not
        our child, so its exit is seen through a pidfd but its status is unknown."""
        pid, u.adopt_pid = u.adopt_pid, None
        assert pid is not None
        u.pid = pid
        await self._readopt_etc_files(u, unit)
        u.started_at = time.monotonic()
        frozen_by = None
        if u.cgroup is not None and self.driver is not None:
            try:
                stats = self.driver.stats(u.cgroup)
                u.new_run_ooms(stats.oom_kills or 0)
                if stats.frozen:
                    frozen_by = u.life.freeze_reason or "user"
                    u.frozen = True
            except (CgroupError, OSError):
                pass
        if self.networks is not None and uses_cni(unit):
            try:
                u.network = await self.networks.check(unit, pid)
            except (NetworkError, OSError) as e:
                u.network = self.networks.attached.get(u.name)  # what it was given: still its own
                log.warning("network_check_failed", unit=u.name, error=str(e))
                self.events.emit(u.name, "network-check-failed", str(e))
        self._commit(u, lc.step(u.life, lc.Adopted(pid, frozen_by), time.monotonic()))
        if u.adopt_since is not None:  # uptime counts from the real start, not the adoption
            u.since, u.adopt_since = u.adopt_since, None
        u.effective = await self._effective_of_adopted(unit)
        await self._see_to_end(u, u.effective, pid, u.cgroup)

    async def _supervise(self, u: UnitRun, unit: Unit, pid: int, ref: CgroupRef | None) -> ExitStatus:
        """Wait for the process to exit, handling commands meanwhile (a stop
        runs beside them, so a stop that takes its time blocks nothing)."""
        result: list[ExitStatus] = []
        exited = anyio.Event()

        async def wait_exit() -> None:
            result.append(await self.reaper.wait(pid))
            exited.set()
            u.poke()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_exit)
            watchers = anyio.CancelScope()

            async def guarded(watcher: Callable[[Supervisor, UnitRun, Unit], Awaitable[None]]) -> None:
                # A policy that breaks (a memory watch the kernel refuses, a bug
                # in a check) ends itself, not the unit.
                try:
                    await watcher(self, u, unit)
                except Exception:
                    log.exception("unit_watcher_failed", unit=u.name, watcher=getattr(watcher, "__name__", repr(watcher)))

            async def run_watchers() -> None:
                with watchers:
                    async with anyio.create_task_group() as wg:
                        for watcher in self.run_watchers:
                            wg.start_soon(guarded, watcher)

            tg.start_soon(run_watchers)
            run = _Run(unit, pid, ref, exited, tg)
            if u.life.state is UnitState.STOPPING:  # stopped while it was being set up
                self._begin_stop(u, run)
            while not exited.is_set():
                cmd = await self._next_command(u, until=exited)
                if cmd is None:
                    break
                await self._handle(u, cmd, run)
            watchers.cancel()
            tg.cancel_scope.cancel()
        return result[0]

    def _begin_stop(self, u: UnitRun, run: _Run) -> None:
        if not run.stopping:
            run.stopping = True
            run.tg.start_soon(self._stop_process, u, run)

    async def _stop_process(self, u: UnitRun, run: _Run) -> None:
        """[stop].signal, then SIGKILL to the scope after [stop].timeout; a kill
        that does not empty the scope (a frozen parent, D state) is reported
        and retried until the process is gone. Never raises."""
        unit, pid, ref, exited = run.unit, run.pid, run.ref, run.exited
        if u.frozen and ref is not None and self.driver is not None:
            # A frozen process cannot act on a signal: thaw first, then signal.
            try:
                await self.driver.thaw(ref)
            except (CgroupError, OSError) as e:
                log.warning("stop_thaw_failed", unit=u.name, error=str(e))
            u.frozen = False
        self._signal_main(unit, pid, unit.stop.signal or signal.SIGTERM)
        with anyio.move_on_after(unit.stop.timeout):
            await exited.wait()
        if exited.is_set():
            return
        self.events.emit(u.name, "kill", "stop timeout", signal="SIGKILL", timeout=unit.stop.timeout)
        wait = KILL_GRACE
        while not exited.is_set():
            with anyio.move_on_after(KILL_GRACE):
                try:
                    await failpoints.ahit("driver.kill", u.name)
                    if ref is not None and self.driver is not None:
                        await self.driver.kill(ref, signal.SIGKILL)
                    else:
                        _kill_quietly(pid, signal.SIGKILL)
                except Exception as e:
                    log.warning("stop_kill_failed", unit=u.name, error=str(e))
                    _kill_quietly(pid, signal.SIGKILL)
            with anyio.move_on_after(wait):
                await exited.wait()
            if exited.is_set():
                return
            why = self._why_stuck(ref)
            self._commit(u, lc.step(u.life, lc.StopStalled(why), time.monotonic()))
            wait = min(wait * 2, STALL_RETRY_MAX)

    def _why_stuck(self, ref: CgroupRef | None) -> str:
        if ref is not None:
            try:
                if cgroup_tree.frozen_by_parent(ref):
                    return "frozen by parent: cannot finish the stop until supd.slice (or above) is thawed; retrying"
            except (CgroupError, OSError):
                pass
        return "processes did not end after SIGKILL (uninterruptible sleep?); retrying"

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
        """Count the run's OOM kills off its scope (before the scope goes), and
        turn a SIGKILL into `oom-kill` when the counter moved."""
        if u.cgroup is None or self.driver is None:
            return status
        try:
            kills = u.run_ended_ooms(self.driver.stats(u.cgroup).oom_kills)
        except (CgroupError, OSError):
            return status
        if kills and status.signal == signal.SIGKILL:
            return ExitStatus(code=None, signal=status.signal, reason="oom-kill")
        return status

    async def _cleanup(self, u: UnitRun, unit: Unit, ref: CgroupRef | None) -> None:
        # The CNI DEL (~170 ms of plugin runs) needs neither the scope nor the
        # root: it runs beside their removal, and to its end whatever they meet.
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._disconnect_shielded, unit.name)
            await self._remove_scope_and_root(unit, ref)

    async def _disconnect_shielded(self, name: str) -> None:
        with anyio.CancelScope(shield=True):
            await self._disconnect(name)

    async def _remove_scope_and_root(self, unit: Unit, ref: CgroupRef | None) -> None:
        if ref is not None and self.driver is not None:
            try:
                await failpoints.ahit("driver.remove", unit.name)
                await self.driver.remove(ref)
            except (CgroupError, OSError) as e:
                log.warning("cgroup_remove_failed", unit=unit.name, error=str(e))
        await self._forget_etc_files(unit)
        if unit.rootfs is not None and self.cleanup_rootfs is not None:
            try:
                # Removing an ephemeral upper can take a while: off the loop.
                await anyio.to_thread.run_sync(self.cleanup_rootfs, unit)
            except OSError as e:
                log.warning("rootfs_cleanup_failed", unit=unit.name, error=str(e))

    async def _disconnect(self, name: str) -> None:
        """CNI DEL of whatever the unit had attached (nothing: nothing done). Never raises."""
        u = self.units.get(name)
        if u is not None:
            u.network = None
        if self.networks is None:
            return
        try:
            await self.networks.detach(name)
        except Exception:  # a plugin or the kernel failing must not end the unit's task
            log.exception("network_detach_failed", unit=name)

    # -------------------------------------------------------- dependencies
    async def _wait_dependencies(self, u: UnitRun, unit: Unit) -> bool:
        """Start what `u` requires and wait until everything it is after runs,
        handling commands meanwhile. False: `u` should not start after all."""
        deps = tuple(dict.fromkeys(unit.unit.after + unit.unit.requires))
        if not deps:
            return True
        for name in unit.unit.requires:
            dep = self.units.get(name)
            if dep is not None and not dep.want_running and dep.unit is not None and dep.state is not UnitState.FAILED:
                if _oneshot_ended(dep):
                    continue  # it ran to its end: done, or failed (`supctl start` runs it again)
                self.events.emit(name, "start", f"required by {u.name}")
                self._post(dep, lc.Start())
        while True:
            if not u.life.due(time.monotonic()):
                return False
            waiting = [n for n in deps if not self._dependency_ready(n)]
            if not waiting:
                return True
            failed = [n for n in unit.unit.requires if self._dependency_failed(n)]
            if failed:
                self._apply(u, lc.DependencyFailed(failed[0]))
                return False
            self._apply(u, lc.Wait(tuple(waiting)))
            cmd: list[Command] = []
            async with anyio.create_task_group() as tg:

                async def changed() -> None:
                    await self.wait_changed()
                    tg.cancel_scope.cancel()

                async def command() -> None:
                    got = await self._next_command(u)
                    if got is not None:
                        cmd.append(got)
                    tg.cancel_scope.cancel()

                tg.start_soon(changed)
                tg.start_soon(command)
            for c in cmd:
                await self._handle(u, c, None)
            if u.unit is not unit:
                return False  # redefined meanwhile: start over with the new definition

    def _post(self, u: UnitRun, event: lc.Event) -> None:
        """Send an event without waiting for it (dependencies: a unit's task
        must never wait on another's)."""
        if not u.gone.is_set():
            u.inbox.append(Command("event", event=event))
            u.poke()

    def _dependency_ready(self, name: str) -> bool:
        dep = self.units.get(name)
        if dep is None:
            return True  # unknown names are unit-file errors, reported by deps.check
        if dep.unit is not None and dep.unit.exec.oneshot:
            return _oneshot_done(dep)  # what comes after an init step waits for its end
        if dep.state not in (UnitState.RUNNING, UnitState.FROZEN):
            return False
        return dep.unit is None or dep.unit.health is None or dep.health == "healthy"

    def _dependency_failed(self, name: str) -> bool:
        dep = self.units.get(name)
        if dep is None:
            return False
        if dep.state in (UnitState.FAILED, UnitState.ERROR):
            return True
        return _oneshot_ended(dep) and not _oneshot_done(dep)

    def _stop_dependents(self, u: UnitRun) -> None:
        if _oneshot_done(u):
            return  # it did what its dependents waited for, and ended as it should
        for other in self.units.values():
            if other is u or other.unit is None or u.name not in other.unit.unit.requires:
                continue
            if other.active or other.want_running:
                self.events.emit(other.name, "stop", f"requires {u.name}")
                self._post(other, lc.Stop(f"requires {u.name}"))


_ACTIVE = (UnitState.RUNNING, UnitState.FROZEN)


def _event_fields(step: lc.Step) -> dict[str, Any]:
    """Event fields, with a signal by name (as in status objects)."""
    fields = dict(step.fields)
    sig = fields.get("signal")
    if isinstance(sig, int):
        fields["signal"] = signal_name(sig)
    return fields


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _oneshot_ended(u: UnitRun) -> bool:
    """A `[exec].type = "oneshot"` unit whose process ran to its end, and
    that no restart will run again."""
    return u.unit is not None and u.unit.exec.oneshot and u.state is UnitState.EXITED


def _oneshot_done(u: UnitRun) -> bool:
    """...and it exited 0. An adopted process's status is unknown (it was not
    supd's child): that is not a success."""
    return _oneshot_ended(u) and u.last_exit is not None and u.last_exit.code == 0
