"""The `[health]` watcher: run the unit's check command inside it, on a
schedule, and act on `retries` consecutive failures (docker's HEALTHCHECK
semantics: failures in `start_period` don't count, a success there already
makes the unit healthy).

The check runs through the same path as `supctl exec` (the unit's namespaces,
root and cgroup). The spawner's relay process B is the daemon's child and the
check C is B's child; a check that outlives `timeout` is killed with all its
descendants, C first, then B, so a hanging check never blocks the daemon.
Checks pause while the unit is frozen: a check would join the frozen cgroup
and hang there.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import anyio
import structlog

from supervisor.daemon.spawnspec import build_exec_spec
from supervisor.seccomp.unitfilter import SeccompError
from supervisor.seccomp.unitfilter import filter_for as seccomp_filter_for
from supervisor.policy.state import UnitState
from supervisor.runtime.spawn import SpawnError
from supervisor.units.model import HealthSpec, Unit

if TYPE_CHECKING:
    from supervisor.daemon.supervisor import Supervisor
    from supervisor.daemon.unitrun import UnitRun

log = structlog.get_logger()

HealthStatus = Literal["starting", "healthy", "unhealthy"]
STARTING: Final = "starting"
HEALTHY: Final = "healthy"
UNHEALTHY: Final = "unhealthy"

# The first check runs this soon after the process started (docker waits a
# full interval; a dependency waiting for "healthy" should not).
FIRST_CHECK_DELAY: Final = 1.0
OUTPUT_LIMIT: Final = 4096
# After the check exits, how long its output pipe may stay open (a child it
# left behind holds it) before we stop reading.
OUTPUT_DRAIN: Final = 0.5
# How long a SIGKILLed check may take to be reaped.
KILL_GRACE: Final = 5.0
REASON: Final = "health"


# ------------------------------------------------------------------ pure


@dataclass
class OutputTail:
    """The last `limit` bytes written to a check's stdout+stderr."""

    limit: int = OUTPUT_LIMIT
    data: bytearray = field(default_factory=bytearray)

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True)
class CheckResult:
    code: int | None  # exit code; None when killed by a signal or not started
    signal: int | None = None
    timed_out: bool = False
    output: str = ""
    error: str | None = None  # could not run at all (exec failed, ...)

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out and self.error is None

    def describe(self, timeout: float) -> str:
        if self.timed_out:
            return f"timeout after {timeout:g}s"
        if self.error is not None:
            return self.error
        if self.signal is not None:
            try:
                return "signal " + signal.Signals(self.signal).name
            except ValueError:
                return f"signal {self.signal}"
        return f"exit {self.code}"


@dataclass
class HealthTracker:
    """Counts consecutive failures and says when the verdict changes."""

    spec: HealthSpec
    started: float  # monotonic start of the process
    status: HealthStatus = STARTING
    failures: int = 0

    def in_start_period(self, now: float) -> bool:
        return 0 <= now - self.started < self.spec.start_period

    def record(self, ok: bool, now: float) -> HealthStatus | None:
        """Take one check's result; returns the new status when it changed."""
        if ok:
            self.failures = 0
            return self._become(HEALTHY)
        if self.in_start_period(now):
            return None
        self.failures += 1
        if self.failures >= max(1, self.spec.retries):
            return self._become(UNHEALTHY)
        return None

    def reset(self) -> None:
        """After a freeze/thaw: count afresh, keep the last verdict until the next check."""
        self.failures = 0

    def _become(self, status: HealthStatus) -> HealthStatus | None:
        if self.status == status:
            return None
        self.status = status
        return status


def descendants(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every descendant of `pid` (children of all its threads, recursively),
    parents before children."""
    out: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop(0)
        try:
            tasks = list((proc / str(parent) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in out:
                    out.append(child)
                    queue.append(child)
    return out


def kill_check(relay_pid: int) -> list[int]:
    """SIGKILL a check's whole process tree: its descendants, then the relay.
    Only pids found under the relay are touched, never the unit's own."""
    victims = descendants(relay_pid)
    for pid in victims + [relay_pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


# ----------------------------------------------------------------- shell


def _cgroup_procs(u: UnitRun) -> tuple[str, ...]:
    if u.cgroup is None:
        return ()
    return tuple(str(Path(p) / "cgroup.procs") for _k, p in u.cgroup.paths)


async def run_check(sup: Supervisor, u: UnitRun, unit: Unit, spec: HealthSpec) -> CheckResult:
    """Run the check once inside the unit; never takes much longer than `spec.timeout`."""
    if u.pid is None:
        return CheckResult(code=None, error="no running process")
    try:
        seccomp = seccomp_filter_for(unit)
    except SeccompError as e:
        return CheckResult(code=None, error=str(e))
    exec_spec = build_exec_spec(
        unit, u.pid, _cgroup_procs(u), list(spec.command), user=None, env={}, cwd=None, seccomp=seccomp
    )
    tail = OutputTail()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    relay: int | None = None
    status = None
    timed_out = False
    try:
        os.set_blocking(read_fd, False)
        async with anyio.create_task_group() as tg:
            done_reading = anyio.Event()

            async def read_output() -> None:
                try:
                    while True:
                        await anyio.wait_readable(read_fd)
                        try:
                            chunk = os.read(read_fd, 65536)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            return
                        tail.add(chunk)
                finally:
                    done_reading.set()

            tg.start_soon(read_output)
            with anyio.move_on_after(spec.timeout) as deadline:
                try:
                    pending = await sup.spawner.spawn(exec_spec, stdio=(null_fd, write_fd, write_fd))
                finally:
                    os.close(write_fd)
                    write_fd = -1
                relay = pending.pid
                try:
                    await pending.go()
                except SpawnError as e:
                    tg.cancel_scope.cancel()
                    return CheckResult(code=None, output=tail.text(), error=str(e))
                status = await sup.reaper.wait(relay)
            if deadline.cancelled_caught:
                timed_out = True
                if relay is not None:
                    with anyio.CancelScope(shield=True):
                        killed = kill_check(relay)
                        log.info("health_check_killed", unit=u.name, relay=relay, pids=killed, timeout=spec.timeout)
                        with anyio.move_on_after(KILL_GRACE):
                            await sup.reaper.wait(relay)
            # A child the check left behind may hold the pipe open: read what is there, then stop.
            with anyio.move_on_after(OUTPUT_DRAIN):
                await done_reading.wait()
            tg.cancel_scope.cancel()
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
        os.close(null_fd)
    if timed_out or status is None:
        return CheckResult(code=None, timed_out=True, output=tail.text())
    return CheckResult(code=status.code, signal=status.signal, output=tail.text())


async def _act(sup: Supervisor, u: UnitRun, action: str) -> None:
    if action == "restart":
        await sup.fail(u, REASON)
    elif action == "freeze":
        if u.state == UnitState.RUNNING and not u.frozen:
            await sup.freeze(u, REASON)
    elif action == "stop":
        await sup.stop(u, REASON)


def _poke_dependents(sup: Supervisor, u: UnitRun) -> None:
    # Units waiting in their dependency wait re-check on a change; a unit's
    # health is not a state change, so say it changed.
    sup.notify_changed()


async def _wait_thawed(sup: Supervisor, u: UnitRun) -> None:
    while u.frozen:
        await sup.wait_changed()


async def health_watcher(sup: Supervisor, u: UnitRun, unit: Unit) -> None:
    """Run beside the unit's process (Supervisor.run_watchers); cancelled when it ends."""
    spec = unit.health
    if spec is None:
        u.health, u.health_output = None, None
        return
    tracker = HealthTracker(spec, started=u.started_at if u.started_at is not None else time.monotonic())
    u.health, u.health_output = STARTING, None
    try:
        await anyio.sleep(FIRST_CHECK_DELAY)
        while True:
            if u.frozen:
                await _wait_thawed(sup, u)
                tracker.reset()
            result = await run_check(sup, u, unit, spec)
            if u.frozen:
                continue  # frozen mid-check: the result says nothing about the unit
            u.health_output = result.output
            now = time.monotonic()
            change = tracker.record(result.ok, now)
            if not result.ok:
                log.info(
                    "health_check_failed",
                    unit=u.name,
                    result=result.describe(spec.timeout),
                    failures=tracker.failures,
                    retries=spec.retries,
                    in_start_period=tracker.in_start_period(now),
                )
            if change is not None:
                u.health = change
                if change == HEALTHY:
                    sup.events.emit(u.name, HEALTHY, REASON)
                    _poke_dependents(sup, u)
                else:
                    sup.events.emit(
                        u.name,
                        UNHEALTHY,
                        REASON,
                        code=result.code,
                        result=result.describe(spec.timeout),
                        failures=tracker.failures,
                        output=result.output[-512:],
                        action=spec.on_failure,
                    )
                    await _act(sup, u, spec.on_failure)
            await anyio.sleep(spec.interval)
    except anyio.get_cancelled_exc_class():
        raise
    except Exception:
        # A bug in a check must not take the unit (or the daemon) down.
        log.exception("health_watcher_crashed", unit=u.name)
    finally:
        # A stale "healthy" must not let a dependent start before the next
        # run's first check; "unhealthy" stays visible in status.
        if u.health != UNHEALTHY:
            u.health = None
