"""Driver scenarios run INSIDE the sandbox's PID namespace.

    python3 -m tests.systemd.scenarios NAME UNIT ADDRESS

PIDs passed to StartTransientUnit are read in systemd's PID namespace, and
systemd's private socket refuses peers it cannot see, so these run through
`Sandbox.run_python` (see sandbox.py) and pytest asserts on the exit code.
Each scenario checks systemd's view (unit properties) and the kernel's view
(/proc/PID/cgroup, cgroup.events, the scope directory), cleans up what it
made, and exits 0 on success or prints what failed and exits 1.

The same scenarios run against the host's own systemd on a systemd-booted
host (HostSystemd in sandbox.py: the pure cgroup v2 VM), where they are plain
host processes. Inside the sandbox on the hybrid host no resource controller
is enforced (all of them are bound to v1), so limits are asserted through
unit properties; a scenario that needs an enforced limit (oom_kill) exits
with SKIP_EXIT and says why.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from supervisor.cgroups import dbus, names
from supervisor.cgroups.devices import container_policy, rule, systemd_device_allow
from supervisor.cgroups.dbus import DBusError
from supervisor.cgroups.driver import UNIFIED, CgroupError, CgroupRef, ScopeSpec
from supervisor.cgroups.systemd import (
    ERR_NO_SUCH_UNIT,
    Property,
    SystemdDriver,
)
from supervisor.units.model import Resources

MiB = 1024 * 1024
UINT64_MAX = 2**64 - 1
SCOPE = dbus.SCOPE_INTERFACE
UNIT = dbus.UNIT_INTERFACE
# Slices are shared by design (systemd keeps them after their last scope), so
# every scenario uses this one: supd-test.slice.
TEST_SLICE = "test"


# Exit status of a scenario that cannot run here (the reason is printed
# after SKIP_PREFIX); automake's "skipped".
SKIP_EXIT = 77
SKIP_PREFIX = "SKIP: "


class ScenarioFailed(AssertionError):
    pass


class ScenarioSkipped(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise ScenarioFailed(what)


async def eventually(probe: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"timed out after {timeout:g}s waiting for: {what}")
        await asyncio.sleep(0.02)


class Ctx:
    def __init__(self, driver: SystemdDriver, unit: str) -> None:
        self.driver = driver
        self.unit = unit
        self.children: list[subprocess.Popen[bytes]] = []

    def spec(self, unit: str | None = None, resources: Resources | None = None, slice_key: str | None = TEST_SLICE) -> ScopeSpec:
        unit = unit or self.unit
        return ScopeSpec(
            unit=unit,
            slice=names.slice_name(slice_key),
            scope=names.scope_name(unit),
            description=f"supd test {unit}",
            resources=resources or Resources(),
        )

    def child(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "600"])
        self.children.append(proc)
        return proc

    async def unit_path(self, scope: str) -> str | None:
        try:
            (path,) = await self.driver._conn.call(dbus.MANAGER, "GetUnit", "s", (scope,))
        except DBusError as e:
            if e.name == ERR_NO_SUCH_UNIT:
                return None
            raise
        return str(path)

    async def prop(self, scope: str, iface: str, name: str) -> object:
        path = await self.unit_path(scope)
        check(path is not None, f"{scope} is not loaded")
        return await self.driver._conn.get_property(str(path), iface, name)

    async def gone(self, ref: CgroupRef) -> None:
        """systemd's view (NoSuchUnit) and the kernel's (no scope dir)."""

        async def unloaded() -> bool:
            return await self.unit_path(ref.scope) is None

        await eventually(unloaded, f"{ref.scope} unloaded (GetUnit -> NoSuchUnit)")
        for _key, path in ref.paths:
            await eventually(lambda: not path.exists(), f"{path} removed")

    def cleanup(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def home_cgroup() -> str:
    """Where this scenario process (and so each child before it is placed)
    lives: /harness in the sandbox, the test runner's cgroup on a host."""
    return proc_cgroup(os.getpid())


def proc_cgroup(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise ScenarioFailed(f"/proc/{pid}/cgroup has no cgroup2 line")


def events(ref: CgroupRef) -> dict[str, str]:
    path = ref.path(UNIFIED)
    check(path is not None, f"ref has no unified path: {ref.paths}")
    assert path is not None
    return dict(line.split() for line in (path / "cgroup.events").read_text().splitlines())


class ExtraPropertiesDriver(SystemdDriver):
    """The real driver, sending extra properties systemd will refuse or act on."""

    def __init__(self, base: SystemdDriver, extra: list[Property], version: int | None = None) -> None:
        super().__init__(base._conn, base.version if version is None else version)
        self.extra = extra

    def _base_properties(self, spec: ScopeSpec, pid: int) -> list[Property]:
        return [*super()._base_properties(spec, pid), *self.extra]


# ---------------------------------------------------------------- scenarios


async def create_remove(ctx: Ctx) -> None:
    child = ctx.child()
    resources = Resources(memory_max=64 * MiB, cpu_weight=200, pids_max=32, cpu_quota=0.5, io_weight=300)
    ref, warnings = await ctx.driver.create(ctx.spec(resources=resources), child.pid)
    check(warnings == [], f"unexpected warnings: {warnings}")
    expected_cg = f"/supd.slice/supd-{TEST_SLICE}.slice/supd-{ctx.unit}.scope"
    check(await ctx.prop(ref.scope, UNIT, "ActiveState") == "active", "ActiveState active")
    cg = await ctx.prop(ref.scope, SCOPE, "ControlGroup")
    check(cg == expected_cg, f"ControlGroup {cg!r}, expected {expected_cg!r}")
    check(proc_cgroup(child.pid) == expected_cg, f"/proc/{child.pid}/cgroup says {proc_cgroup(child.pid)!r}")
    check(ref.path(UNIFIED) == Path("/sys/fs/cgroup" + expected_cg), f"ref paths {ref.paths}")
    check(ctx.driver.pids(ref) == [child.pid], f"pids {ctx.driver.pids(ref)} != [{child.pid}]")
    for name, want in (("MemoryMax", 64 * MiB), ("CPUWeight", 200), ("TasksMax", 32),
                       ("CPUQuotaPerSecUSec", 500_000), ("IOWeight", 300), ("Delegate", True),
                       ("Slice", f"supd-{TEST_SLICE}.slice"), ("CollectMode", "inactive-or-failed")):  # fmt: skip
        got = await ctx.prop(ref.scope, SCOPE if name not in ("CollectMode",) else UNIT, name)
        check(got == want, f"{name} = {got!r}, expected {want!r}")
    found = ctx.driver.find(ctx.spec(resources=resources))
    check(found == ref, f"find() gave {found}, expected {ref}")
    afound = await ctx.driver.afind(ctx.spec())
    check(afound == ref, f"afind() gave {afound}, expected {ref}")
    await ctx.driver.remove(ref)
    await ctx.gone(ref)
    # StopUnit sends SIGTERM to what is left in the scope
    child.wait(timeout=10)
    check(child.returncode == -signal.SIGTERM, f"child exit {child.returncode}, expected -15")
    check(await ctx.driver.afind(ctx.spec()) is None, "afind after remove")
    check(ctx.driver.find(ctx.spec()) is None, "find after remove")


async def freeze_thaw(ctx: Ctx) -> None:
    child = ctx.child()
    ref, _ = await ctx.driver.create(ctx.spec(), child.pid)
    try:
        await ctx.driver.freeze(ref)
        check(await ctx.prop(ref.scope, UNIT, "FreezerState") == "frozen", "FreezerState frozen")
        await eventually(lambda: events(ref).get("frozen") == "1", "cgroup.events frozen 1")
        state = Path(f"/proc/{child.pid}/stat").read_text().split(")")[1].split()[0]
        check(state in ("S", "D"), f"frozen child state {state}")
        await ctx.driver.thaw(ref)
        check(await ctx.prop(ref.scope, UNIT, "FreezerState") == "running", "FreezerState running")
        await eventually(lambda: events(ref).get("frozen") == "0", "cgroup.events frozen 0")
    finally:
        await ctx.driver.remove(ref)
    await ctx.gone(ref)

    # systemd < 246 has no FreezeUnit: the driver falls back to the cgroup's own freezer
    old = SystemdDriver(ctx.driver._conn, 245)
    child2 = ctx.child()
    ref2, _ = await old.create(ctx.spec(), child2.pid)
    try:
        await old.freeze(ref2)
        check(events(ref2).get("frozen") == "1", "path-level freeze: cgroup.events frozen 1")
        await old.thaw(ref2)
        check(events(ref2).get("frozen") == "0", "path-level thaw: cgroup.events frozen 0")
    finally:
        await old.remove(ref2)
    await ctx.gone(ref2)


async def kill_all(ctx: Ctx) -> None:
    first, second = ctx.child(), ctx.child()
    ref, _ = await ctx.driver.create(ctx.spec(), first.pid)
    # a second process joins the scope the way a container's children would: via the cgroup
    path = ref.path(UNIFIED)
    assert path is not None
    (path / "cgroup.procs").write_text(str(second.pid))
    check(sorted(ctx.driver.pids(ref)) == sorted([first.pid, second.pid]), f"pids {ctx.driver.pids(ref)}")
    await ctx.driver.kill(ref, signal.SIGKILL)
    check(ctx.driver.pids(ref) == [], f"pids after SIGKILL: {ctx.driver.pids(ref)}")
    for proc in (first, second):
        proc.wait(timeout=10)
        check(proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, expected -9")
    await ctx.driver.remove(ref)  # an emptied scope may be gone already: no error
    await ctx.gone(ref)


async def refused_property(ctx: Ctx) -> None:
    bogus = ExtraPropertiesDriver(ctx.driver, [("SupdNoSuchProperty", ("t", 1))])
    child = ctx.child()
    ref, warnings = await bogus.create(ctx.spec(resources=Resources(memory_max=32 * MiB)), child.pid)
    try:
        check(len(warnings) == 1 and "SupdNoSuchProperty" in warnings[0], f"warnings {warnings}")
        check(warnings[0].startswith(f"{ctx.unit}: "), f"warning names the unit: {warnings[0]}")
        check(await ctx.prop(ref.scope, UNIT, "ActiveState") == "active", "scope active without the bogus property")
        check(await ctx.prop(ref.scope, SCOPE, "MemoryMax") == 32 * MiB, "MemoryMax still applied")
    finally:
        await bogus.remove(ref)
    await ctx.gone(ref)

    # A too-old systemd (by version): AllowedCPUs (>= 244) is dropped before asking.
    old = SystemdDriver(ctx.driver._conn, 243)
    child2 = ctx.child()
    ref2, warnings2 = await old.create(ctx.spec(resources=Resources(cpuset="0", pids_max=10)), child2.pid)
    try:
        check(len(warnings2) == 1 and "[resources].cpuset" in warnings2[0] and "244" in warnings2[0], f"warnings {warnings2}")
        check(await ctx.prop(ref2.scope, SCOPE, "AllowedCPUs") == b"", "AllowedCPUs not sent")
        check(await ctx.prop(ref2.scope, SCOPE, "TasksMax") == 10, "TasksMax applied")
    finally:
        await old.remove(ref2)
    await ctx.gone(ref2)

    # A refused essential property is an error, and no half scope is left.
    child3 = ctx.child()
    spec = ctx.spec()
    bad = ScopeSpec(spec.unit, "not-a-slice.service", spec.scope, spec.description, spec.resources)
    try:
        await ctx.driver.create(bad, child3.pid)
    except CgroupError as e:
        check(spec.scope in str(e), f"error names the scope: {e}")
        print("refused essential property:", e)
    else:
        raise ScenarioFailed("a scope in a non-slice was accepted")
    check(await ctx.unit_path(spec.scope) is None, "no scope left after the refusal")
    check(proc_cgroup(child3.pid) == home_cgroup(), f"child moved anyway: {proc_cgroup(child3.pid)}")


async def device_policy(ctx: Ctx) -> None:
    """A container scope: DevicePolicy=closed and docker's list (plus a
    granted device) as DeviceAllow=; a systemd too old for the entries
    refuses the start instead of running the container unconfined."""
    import dataclasses

    policy = container_policy([rule("c", 10, 229, "rw")])
    child = ctx.child()
    spec = dataclasses.replace(ctx.spec(), devices=policy)
    ref, warnings = await ctx.driver.create(spec, child.pid)
    try:
        check(warnings == [], f"unexpected warnings: {warnings}")
        got = await ctx.prop(ref.scope, SCOPE, "DevicePolicy")
        check(got == "closed", f"DevicePolicy = {got!r}, expected 'closed'")
        allow = [tuple(e) for e in await ctx.prop(ref.scope, SCOPE, "DeviceAllow")]  # type: ignore[attr-defined]
        want = systemd_device_allow(policy)
        # systemd keeps its list newest first: compare as sets of entries
        check(sorted(allow) == sorted(want), f"DeviceAllow = {allow!r}, expected {want!r}")
        check(("char-*", "m") in allow and ("char-136", "rwm") in allow and ("/dev/char/10:229", "rw") in allow,
              f"DeviceAllow lacks docker's entries: {allow!r}")  # fmt: skip
    finally:
        await ctx.driver.remove(ref)
    await ctx.gone(ref)

    # a plain scope gets neither
    child2 = ctx.child()
    ref2, _ = await ctx.driver.create(ctx.spec(), child2.pid)
    try:
        got = await ctx.prop(ref2.scope, SCOPE, "DevicePolicy")
        check(got == "auto", f"plain scope DevicePolicy = {got!r}, expected 'auto'")
        check(list(await ctx.prop(ref2.scope, SCOPE, "DeviceAllow")) == [], "plain scope has no DeviceAllow")  # type: ignore[call-overload]
    finally:
        await ctx.driver.remove(ref2)
    await ctx.gone(ref2)

    old = SystemdDriver(ctx.driver._conn, 239)
    child3 = ctx.child()
    try:
        await old.create(spec, child3.pid)
    except CgroupError as e:
        check("systemd >= 240" in str(e) and spec.scope in str(e), f"error says why: {e}")
    else:
        raise ScenarioFailed("a container scope was started without device rules support")
    check(await ctx.unit_path(spec.scope) is None, "no scope left after the refusal")


async def failed_job(ctx: Ctx) -> None:
    # A pid that does not exist in systemd's pid namespace.
    child = subprocess.Popen(["true"])
    child.wait()
    dead_pid = child.pid
    spec = ctx.spec()
    try:
        await ctx.driver.create(spec, dead_pid)
    except CgroupError as e:
        msg = str(e)
        check(spec.scope in msg, f"error names the scope: {msg}")
        print("failed start reported as:", msg)
    else:
        raise ScenarioFailed(f"create() with dead pid {dead_pid} succeeded")
    check(await ctx.unit_path(spec.scope) is None, "no scope left after the failed start")


async def failed_dependency(ctx: Ctx) -> None:
    """A start job that ends in a result other than "done": the scope requires a
    service that fails, so its job ends with "dependency"."""
    conn = ctx.driver._conn
    service = f"{ctx.unit}-fails.service"
    (job,) = await conn.call(dbus.MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", (
        service, "fail",
        [("Type", ("s", "oneshot")), ("ExecStart", ("a(sasb)", [("/bin/false", ["/bin/false"], False)]))],
        [],
    ))  # fmt: skip
    check(await conn.wait_job(job, 30) == "failed", "the helper service fails")
    driver = ExtraPropertiesDriver(ctx.driver, [("Requires", ("as", [service])), ("After", ("as", [service]))])
    child = ctx.child()
    spec = ctx.spec()
    try:
        await driver.create(spec, child.pid)
    except CgroupError as e:
        msg = str(e)
        check(spec.scope in msg and "'dependency'" in msg, f"error names the scope and the result: {msg}")
        print("failed start job reported as:", msg)
    else:
        raise ScenarioFailed("a scope requiring a failing service started")
    finally:
        await conn.call(dbus.MANAGER, "ResetFailedUnit", "s", (service,))
    check(await ctx.unit_path(spec.scope) is None, "no scope left after the failed job")
    check(child.poll() is None, "the process itself was not killed")


async def stats(ctx: Ctx) -> None:
    child = ctx.child()
    ref, _ = await ctx.driver.create(ctx.spec(), child.pid)
    try:
        from_files = ctx.driver.stats(ref)
        check(from_files.cpu_usage_ns is not None, f"cpu usage from cpu.stat: {from_files}")
        check(from_files.frozen is False, f"not frozen: {from_files}")
        from_unit = await ctx.driver.unit_stats(ref)
        check(from_unit.cpu_usage_ns is not None, f"CPUUsageNSec: {from_unit}")
        check(from_unit.frozen is False, f"FreezerState: {from_unit}")
        await ctx.driver.freeze(ref)
        check(ctx.driver.stats(ref).frozen, "stats see the freeze")
        check((await ctx.driver.unit_stats(ref)).frozen, "unit_stats see the freeze")
        await ctx.driver.thaw(ref)
    finally:
        await ctx.driver.remove(ref)
    await ctx.gone(ref)


async def auto_select(ctx: Ctx) -> None:
    """select.open_driver: systemd when its marker exists and the bus answers,
    else cgroupfs. The helper has the host's /run, so the sandbox's marker is
    passed in as /proc/1/root/run/systemd/system."""
    from supervisor.cgroups import select

    marker = Path("/proc/1/root/run/systemd/system")
    check(marker.is_dir(), f"{marker} exists inside the sandbox")
    address = ctx.driver._conn.address
    chosen = await select.open_driver("auto", systemd_marker=marker, bus_address=address)
    try:
        check(chosen.name == "systemd", f"auto chose {chosen.name}")
        check(isinstance(chosen, SystemdDriver) and chosen.version >= 252, f"version {getattr(chosen, 'version', None)}")
    finally:
        await chosen.aclose()
    dead = await select.open_driver("auto", systemd_marker=marker, bus_address="unix:path=/nonexistent/supd/bus")
    try:
        check(dead.name == "cgroupfs", f"no bus answering -> cgroupfs, got {dead.name}")
    finally:
        await dead.aclose()
    absent = await select.open_driver("auto", systemd_marker=Path("/nonexistent/run/systemd/system"), bus_address=address)
    try:
        check(absent.name == "cgroupfs", f"no marker -> cgroupfs, got {absent.name}")
    finally:
        await absent.aclose()


async def update_live(ctx: Ctx) -> None:
    child = ctx.child()
    ref, _ = await ctx.driver.create(ctx.spec(resources=Resources(memory_max=64 * MiB, cpu_weight=50)), child.pid)
    try:
        warnings = await ctx.driver.update(ref, Resources(memory_max=128 * MiB, pids_max=20))
        check(warnings == [], f"warnings {warnings}")
        check(await ctx.prop(ref.scope, SCOPE, "MemoryMax") == 128 * MiB, "MemoryMax updated")
        check(await ctx.prop(ref.scope, SCOPE, "TasksMax") == 20, "TasksMax set")
        cpu_weight = await ctx.prop(ref.scope, SCOPE, "CPUWeight")
        check(cpu_weight == UINT64_MAX, f"CPUWeight cleared to default, got {cpu_weight}")
        check(await ctx.prop(ref.scope, UNIT, "ActiveState") == "active", "still active")
        check(proc_cgroup(child.pid) == f"/supd.slice/supd-{TEST_SLICE}.slice/supd-{ctx.unit}.scope", "child stayed")
    finally:
        await ctx.driver.remove(ref)
    await ctx.gone(ref)


async def unit_exists(ctx: Ctx) -> None:
    first, second = ctx.child(), ctx.child()
    ref, _ = await ctx.driver.create(ctx.spec(), first.pid)
    try:
        try:
            await ctx.driver.create(ctx.spec(), second.pid)
        except CgroupError as e:
            check("UnitExists" in str(e) and ref.scope in str(e), f"clear error: {e}")
        else:
            raise ScenarioFailed("second create of an active scope succeeded")
        check(await ctx.prop(ref.scope, UNIT, "ActiveState") == "active", "first scope untouched")
        check(ctx.driver.pids(ref) == [first.pid], f"pids {ctx.driver.pids(ref)}")
    finally:
        await ctx.driver.remove(ref)
    await ctx.gone(ref)


async def remove_stale(ctx: Ctx) -> None:
    keep_unit, stale_unit = f"{ctx.unit}keep", f"{ctx.unit}stale"
    a, b = ctx.child(), ctx.child()
    kept, _ = await ctx.driver.create(ctx.spec(unit=keep_unit), a.pid)
    stale, _ = await ctx.driver.create(ctx.spec(unit=stale_unit), b.pid)
    try:
        # other sessions' supd units may live in this sandbox too: keep everything but ours
        (units,) = await ctx.driver._conn.call(dbus.MANAGER, "ListUnitsByPatterns", "asas", ([], ["supd-*.scope"]))
        others = {names.unit_of_scope(u[0]) for u in units} - {stale_unit}
        removed = await ctx.driver.remove_stale({*others, keep_unit}, owned=[stale])
        check(removed == [stale.scope], f"removed {removed}, expected [{stale.scope}]")
        await ctx.gone(stale)
        check(await ctx.prop(kept.scope, UNIT, "ActiveState") == "active", "kept scope still active")
    finally:
        await ctx.driver.remove(kept)
        await ctx.driver.remove(stale)
    await ctx.gone(kept)


async def reconnect(ctx: Ctx) -> None:
    conn = ctx.driver._conn
    before = await conn.get_property(dbus.SYSTEMD_PATH, dbus.MANAGER_INTERFACE, "Version")
    assert conn._conn is not None
    conn._conn.writer.transport.abort()  # the connection dies under us (dbus-daemon restart)
    await asyncio.sleep(0.05)
    after = await conn.get_property(dbus.SYSTEMD_PATH, dbus.MANAGER_INTERFACE, "Version")
    check(before == after, f"Version {before!r} then {after!r}")
    # job waits work on the new connection (Subscribe + match redone)
    child = ctx.child()
    ref, _ = await ctx.driver.create(ctx.spec(), child.pid)
    await ctx.driver.remove(ref)
    await ctx.gone(ref)


# The kernel kills the child at memory_max = 32M while it fills 64M.
OOM_CHILD = "import sys, time; sys.stdin.read(1); b = b'x' * (64 << 20); time.sleep(60)"


async def oom_kill(ctx: Ctx) -> None:
    """An OOM kill is still counted after systemd has garbage-collected the
    emptied scope, its cgroup and memory.events with it (systemd 252 reports
    the scope "Deactivated successfully"): the daemon classifies the exit
    only after that."""
    child = subprocess.Popen([sys.executable, "-c", OOM_CHILD], stdin=subprocess.PIPE)
    ctx.children.append(child)
    ref, warnings = await ctx.driver.create(ctx.spec(resources=Resources(memory_max=32 * MiB)), child.pid)
    try:
        path = ref.path(UNIFIED)
        assert path is not None
        if not (path / "memory.max").exists():
            raise ScenarioSkipped(
                f"no cgroup2 memory controller under this systemd ({path} has no memory.max; "
                "on a hybrid host every controller is bound to v1): memory_max cannot OOM-kill here"
            )
        check(warnings == [], f"warnings {warnings}")
        check((path / "memory.max").read_text().strip() == str(32 * MiB), "memory.max is 32M")
        check(ctx.driver.stats(ref).oom_kills == 0, f"no OOM kill yet: {ctx.driver.stats(ref)}")
        assert child.stdin is not None
        child.stdin.write(b"x")
        child.stdin.close()
        await eventually(lambda: child.poll() is not None, "the child to die at memory_max", timeout=60)
        check(child.returncode == -signal.SIGKILL, f"child exit {child.returncode}, expected -9 (OOM kill)")
        # systemd removes the empty scope by itself; only then do we look
        await ctx.gone(ref)
        check(not (path / "memory.events").exists(), "memory.events is gone with the scope")
        stats = ctx.driver.stats(ref)
        check(stats.oom_kills == 1, f"oom_kills after the scope is gone: {stats.oom_kills}, expected 1")
        print(f"oom kills seen after systemd removed {ref.scope}: {stats.oom_kills}")
    finally:
        await ctx.driver.remove(ref)
    await ctx.gone(ref)
    check(ctx.driver.stats(ref).oom_kills is None, "remove() forgets the watch")


async def describe(ctx: Ctx) -> None:
    text = ctx.driver.describe()
    check(text.startswith(f"systemd {ctx.driver.version} ("), f"describe: {text!r}")
    check("unified (cgroup2)" in text, f"describe: {text!r}")
    print(text)


SCENARIOS: dict[str, Callable[[Ctx], Awaitable[None]]] = {
    f.__name__: f
    for f in (create_remove, freeze_thaw, kill_all, refused_property, failed_job, failed_dependency,
              update_live, unit_exists, remove_stale, reconnect, describe, stats, auto_select,
              oom_kill, device_policy)  # fmt: skip
}


async def run(name: str, unit: str, address: str) -> int:
    driver = await SystemdDriver.connect(address)
    ctx = Ctx(driver, unit)
    try:
        await SCENARIOS[name](ctx)
    except ScenarioSkipped as e:
        print(f"{SKIP_PREFIX}{e}")
        return SKIP_EXIT
    except Exception as e:
        traceback.print_exc()
        print(f"FAILED {name}: {e}")
        return 1
    finally:
        ctx.cleanup()
        await driver.aclose()
    print(f"OK {name}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in SCENARIOS:
        print(f"usage: scenarios {{{','.join(SCENARIOS)}}} UNIT ADDRESS", file=sys.stderr)
        return 2
    return asyncio.run(run(*argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
