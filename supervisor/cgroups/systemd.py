"""SystemdDriver: unit scopes made and managed by systemd over D-Bus.

Like runc's and youki's systemd managers: the scope is a transient unit
(StartTransientUnit "supd-<unit>.scope" in mode "fail") carrying the PID, the
slice, Delegate=yes and the unit's resources as systemd properties; we then
wait for the start job's JobRemoved. systemd owns the cgroup, so limits are
changed with SetUnitProperties, and freeze/kill/stop go through the unit.
Reading (stats, pids) uses the cgroup files, found by mapping the scope's
ControlGroup onto this process's cgroup mounts.

A property systemd refuses (too old, or unknown to it) is dropped with a
warning and the start retried, never leaving half a scope behind.

OOM kills outlive the scope. systemd garbage-collects an emptied scope, its
cgroup and memory.events with it, at once (systemd 252 even reports the scope
"Deactivated successfully": scopes get no OOM result before 253); that is
usually before the daemon has read the counter for the exit. So, like runc,
containerd and conmon, the driver follows each scope's memory.events while it
lives (the kernel raises oom_kill before it sends the SIGKILL, and marks the
file modified, which wakes an inotify watch; while the scope is at its memory
limit the file is also read every millisecond, because that notification can
be lost, and the kernel log's record of each OOM kill counts too) and
`stats()` reports the last count seen once the file is gone.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import select
import signal
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from supervisor import inotify
from supervisor.cgroups import dbus, devices, kmsg, layout, ownership, translate, tree
from supervisor.cgroups.dbus import MANAGER, Connection, DBusConnectionError, DBusError
from supervisor.cgroups.driver import UNIFIED, CgroupError, CgroupRef, CgroupStats, ScopeSpec
from supervisor.cgroups.layout import DEFAULT_ROOT, MOUNTINFO, Hierarchy, Layout
from supervisor.cgroups.names import ROOT_SLICE, SCOPE_PREFIX, SCOPE_SUFFIX, unit_of_scope
from supervisor.units.model import Resources

log = structlog.get_logger()

DRIVER_NAME = "systemd"

# --- systemd properties (besides the resource ones in translate)
PIDS = "PIDs"
SLICE = "Slice"
DESCRIPTION = "Description"
DELEGATE = "Delegate"
COLLECT_MODE = "CollectMode"
OOM_POLICY = "OOMPolicy"
DEFAULT_DEPENDENCIES = "DefaultDependencies"
MEMORY_ACCOUNTING = "MemoryAccounting"
CPU_ACCOUNTING = "CPUAccounting"
TASKS_ACCOUNTING = "TasksAccounting"
CONTROL_GROUP = "ControlGroup"
ACTIVE_STATE = "ActiveState"
FREEZER_STATE = "FreezerState"
VERSION = "Version"
MEMORY_CURRENT = "MemoryCurrent"
CPU_USAGE_NSEC = "CPUUsageNSec"
TASKS_CURRENT = "TasksCurrent"
DEVICE_POLICY = "DevicePolicy"
DEVICE_ALLOW = "DeviceAllow"

# --- D-Bus error names
ERR_UNIT_EXISTS = "org.freedesktop.systemd1.UnitExists"
ERR_NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
ERR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ERR_PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"
ERR_UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"
ERR_NOT_SUPPORTED = "org.freedesktop.DBus.Error.NotSupported"
REFUSED_PROPERTY_ERRORS = frozenset({ERR_INVALID_ARGS, ERR_PROPERTY_READ_ONLY, ERR_UNKNOWN_PROPERTY})

JOB_MODE_FAIL = "fail"
JOB_DONE = "done"
KILL_WHO_ALL = "all"
COLLECT_INACTIVE_OR_FAILED = "inactive-or-failed"
# systemd >= 253 stops a whole scope after an OOM kill in it (DefaultOOMPolicy=
# stop); as with the cgroupfs driver the kernel kills one process and supd
# decides what the unit does next (runc sets the same).
OOM_CONTINUE = "continue"
UINT64_MAX = 2**64 - 1  # systemd's "not set / infinity" for t properties

JOB_TIMEOUT = 30.0
KILL_TIMEOUT = 10.0
POLL_INTERVAL = 0.02

# First systemd version that knows a property / method (from systemd's NEWS).
MIN_VERSION: dict[str, int] = {
    translate.SD_ALLOWED_CPUS: 244,
    translate.SD_MEMORY_MAX: 231,
    translate.SD_MEMORY_HIGH: 231,
    translate.SD_CPU_WEIGHT: 231,
    translate.SD_IO_WEIGHT: 230,
    translate.SD_TASKS_MAX: 227,
    translate.SD_CPU_QUOTA_PER_SEC: 213,
    COLLECT_MODE: 236,
}
FREEZE_MIN_VERSION = 246
# "char-*", "char-MAJOR" and unstat'ed "/dev/char/MAJ:MIN" in DeviceAllow=.
DEVICES_MIN_VERSION = 240
# Base properties a systemd too old for them simply does without (no warning:
# they change no limit the unit asked for).
QUIET_MIN_VERSION: dict[str, int] = {OOM_POLICY: 253}

# systemd property -> the unit-file key it comes from, for warnings
PROPERTY_KEYS: dict[str, str] = {
    translate.SD_MEMORY_MAX: translate.KEY_MEMORY_MAX,
    translate.SD_MEMORY_HIGH: translate.KEY_MEMORY_HIGH,
    translate.SD_CPU_WEIGHT: translate.KEY_CPU_WEIGHT,
    translate.SD_CPU_QUOTA_PER_SEC: translate.KEY_CPU_QUOTA,
    translate.SD_TASKS_MAX: translate.KEY_PIDS_MAX,
    translate.SD_IO_WEIGHT: translate.KEY_IO_WEIGHT,
    translate.SD_ALLOWED_CPUS: translate.KEY_CPUSET,
}
# Properties a scope cannot do without: a refusal of one of these is an error
# (a container never runs without its device rules).
ESSENTIAL = frozenset({PIDS, SLICE, DESCRIPTION, DELEGATE, DEVICE_POLICY, DEVICE_ALLOW})


Property = tuple[str, tuple[str, Any]]


# ---------------------------------------------------------------- pure parts


def parse_version(text: str) -> int:
    """Manager.Version ("252.38-1~deb12u1", "v255", "249") -> 252."""
    m = re.search(r"\d+", text)
    if m is None:
        raise CgroupError("org.freedesktop.systemd1.Manager.Version", text, "expected a version number")
    return int(m.group())


def gate_by_version(unit: str, props: Sequence[Property], version: int) -> tuple[list[Property], list[str]]:
    """Drop properties this systemd is too old to know, with a warning each."""
    kept: list[Property] = []
    warnings: list[str] = []
    for prop in props:
        need = MIN_VERSION.get(prop[0], 0)
        if version < need:
            warnings.append(_warning(unit, prop[0], f"needs systemd >= {need}, this is {version}"))
        else:
            kept.append(prop)
    return kept, warnings


def quiet_gate(props: Sequence[Property], version: int) -> list[Property]:
    """Drop the base properties this systemd is too old for, silently."""
    return [p for p in props if version >= QUIET_MIN_VERSION.get(p[0], 0)]


def refused_property(error: DBusError, props: Sequence[Property]) -> str | None:
    """Which optional property a refusal names ("Cannot set property Foo, or
    unknown property."), or None when the error is about something else."""
    if error.name not in REFUSED_PROPERTY_ERRORS:
        return None
    # longest names first: "MemoryMax" must not shadow "MemoryMaxFoo"
    for name in sorted((p[0] for p in props), key=len, reverse=True):
        if name not in ESSENTIAL and re.search(rf"\b{re.escape(name)}\b", error.message):
            return name
    return None


def device_properties(unit: str, policy: devices.DevicePolicy, version: int) -> list[Property]:
    """DevicePolicy=closed plus the policy as DeviceAllow= entries. "closed"
    also lets through what systemd always allows: null, zero, full, random,
    urandom, tty, ptmx and pts (all in docker's list), and its own
    /run/systemd/inaccessible nodes (0:0, which no driver opens)."""
    if version < DEVICES_MIN_VERSION:
        raise CgroupError(
            f"{SCOPE_PREFIX}{unit}{SCOPE_SUFFIX}", None,
            f"container device rules need systemd >= {DEVICES_MIN_VERSION} (DeviceAllow= char-*/char-MAJOR), this is {version}",
        )  # fmt: skip
    return [
        (DEVICE_POLICY, ("s", devices.SD_POLICY_CLOSED)),
        (DEVICE_ALLOW, ("a(ss)", devices.systemd_device_allow(policy))),
    ]


def _warning(unit: str, prop: str, why: str) -> str:
    key = PROPERTY_KEYS.get(prop, prop)
    return f"{unit}: {key}: systemd property {prop} {why}; limit not applied"


def scope_paths(control_group: str, hierarchies: Iterable[Hierarchy]) -> tuple[tuple[str, Path], ...]:
    """A ControlGroup ("/supd.slice/supd-web.scope") as a directory in every
    mounted hierarchy (systemd only makes v1 dirs for the controllers it uses,
    so the caller keeps those that exist)."""
    found: list[tuple[str, Path]] = []
    for h in hierarchies:
        root = h.mount_root.rstrip("/")
        if root and control_group != root and not control_group.startswith(root + "/"):
            continue  # the mount shows another part of the hierarchy
        found.append((h.key, h.mount / control_group[len(root):].lstrip("/")))
    return tuple(sorted(found))


def memory_event_counts(memory_events: str) -> dict[str, int]:
    """The counters of a memory.events text, by name."""
    counts: dict[str, int] = {}
    for line in memory_events.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            counts[key] = int(value)
    return counts


def oom_kill_count(memory_events: str) -> int | None:
    """The `oom_kill` counter of a memory.events text, None if it has none."""
    return memory_event_counts(memory_events).get("oom_kill")


def at_the_limit(before: dict[str, int], after: dict[str, int]) -> bool:
    """Whether the cgroup hit memory.max (or went OOM) between two readings:
    the moments an OOM kill can follow."""
    return any(after.get(key, 0) > before.get(key, 0) for key in ("max", "oom"))


# ---------------------------------------------------------------- OOM watch



def _read_memory_events(file: Path) -> dict[str, int] | None:
    """The file's counters; None once the cgroup is gone."""
    try:
        with open(file) as f:
            return memory_event_counts(f.read())
    except OSError as e:
        # ENOENT/ENODEV: the cgroup is gone (or going); anything else is a real error
        if e.errno in (errno.ENOENT, errno.ENODEV, errno.ENOTDIR):
            return None
        raise CgroupError(file, None, f"cannot read: {e.strerror}") from e


class OomWatch:
    """Follows the `oom_kill` counter (memory.events) of every scope the
    driver knows, while each lives.

    One inotify instance for all of them (instances are a scarce per-user
    resource, 128 by default; watches are not), read by one thread of its own
    that wakes on each notification and reads the file at once: systemd
    removes an emptied scope within milliseconds, and the daemon's event loop
    can be busy for longer than that (under the pure-v2 VM's emulation a
    reader callback on the loop lost the race). `kills(file)` is the highest
    count read, kept after the file is gone until `unwatch(file)`.

    Notifications alone can miss the kill. The kernel raises oom_kill before
    it sends the victim its SIGKILL, but it sends at most one notification
    per file per 10 ms: when the reclaim that came first ("max" events) has
    just notified, the one for oom_kill waits on a timer, and a scope that
    systemd removes within that time takes the pending notification with it
    (seen under the VM: the count was lost once in five runs). So from the
    moment a file shows the cgroup at its limit ("max" or "oom" rising),
    the thread also reads it every millisecond, until it has been quiet for
    HOT_SECONDS or is gone. A unit that lives at its limit costs one small
    read per millisecond while it does; any other costs nothing.

    A kill that comes at once, before the file was ever read at its limit,
    can still be lost that way (seen under the VM too). The thread therefore
    also reads the kernel's log, where every OOM kill is written, naming the
    scope, before the victim gets its SIGKILL (`kmsg`): the count is the
    higher of what memory.events said and what the kernel logged."""

    POLL_SECONDS = 0.001
    HOT_SECONDS = 0.5

    def __init__(self, *, kernel_log: str | None = kmsg.KMSG) -> None:
        self.fd: int | None = None
        self._kernel_log = kernel_log
        self._kmsg: int | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_r = self._stop_w = -1
        self._files: dict[int, Path] = {}  # live watch descriptor -> file
        self._kills: dict[Path, int] = {}
        self._counts: dict[Path, dict[str, int]] = {}  # the last reading, to see pressure rise
        self._hot: dict[Path, float] = {}  # file at its limit -> monotonic time its polling ends
        self._logged: dict[Path, int] = {}  # the count at watch() plus the kills the kernel logged since

    def watching(self, file: Path) -> bool:
        with self._lock:
            return file in self._kills

    def kills(self, file: Path) -> int | None:
        with self._lock:
            return self._kills.get(file)

    def watch(self, file: Path) -> None:
        """Start following `file`; CgroupError if it cannot be watched."""
        with self._lock:
            if self.fd is None:
                self._start()
            assert self.fd is not None
            counts = _read_memory_events(file) or {}
            self._kills[file] = self._logged[file] = counts.get("oom_kill", 0)
            self._counts[file] = counts
            try:
                wd = inotify.add_watch(self.fd, file, inotify.IN_MODIFY)
            except OSError as e:
                del self._kills[file], self._counts[file], self._logged[file]
                raise CgroupError(file, None, f"inotify_add_watch failed: {e.strerror}") from e
            self._files[wd] = file
        self._refresh(file)  # a kill between the first read and the watch

    def _start(self) -> None:
        try:
            self.fd = inotify.new_instance()
        except OSError as e:
            raise CgroupError("inotify", None, f"inotify_init1 failed: {e.strerror}") from e
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        if self._kernel_log is not None:
            self._kmsg = kmsg.open_reader(self._kernel_log)
            if self._kmsg is None:
                log.info("kernel_log_unreadable", path=self._kernel_log,
                         effect="OOM kills counted from memory.events only")
        self._thread = threading.Thread(target=self._run, name="supd-oom-watch", daemon=True)
        self._thread.start()

    def unwatch(self, file: Path) -> None:
        """Forget `file` (its scope was removed)."""
        with self._lock:
            self._kills.pop(file, None)
            self._counts.pop(file, None)
            self._hot.pop(file, None)
            self._logged.pop(file, None)
            for wd in [wd for wd, f in self._files.items() if f == file]:
                del self._files[wd]
                if self.fd is not None:
                    inotify.rm_watch(self.fd, wd)  # EINVAL once the file is gone: fine

    def _refresh(self, file: Path) -> None:
        try:
            counts = _read_memory_events(file)
        except CgroupError as e:
            log.warning("scope_oom_watch_read_failed", error=str(e))
            counts = None
        seen = False
        with self._lock:
            if file not in self._kills:
                return
            if counts is None:  # gone: nothing more to read
                self._hot.pop(file, None)
                return
            if at_the_limit(self._counts.get(file, {}), counts):
                self._hot[file] = time.monotonic() + self.HOT_SECONDS
            self._counts[file] = counts
            kills = counts.get("oom_kill")
            if kills is not None and kills > self._kills[file]:
                self._kills[file] = kills
                seen = True
        if seen:
            log.info("scope_oom_kill_seen", file=str(file), oom_kills=kills)

    def kernel_record(self, record: str) -> None:
        """A /dev/kmsg record: an OOM kill the kernel logged counts for the
        scope it names (the one over its limit, or the victim's: a scope's
        own sub-cgroups included), whether or not memory.events still
        exists to say so."""
        cgroups = kmsg.oom_kill_cgroups(record)
        if not cgroups:
            return
        parts = {part for path in cgroups for part in path.strip("/").split("/")}
        seen: list[tuple[Path, int]] = []
        with self._lock:
            for file in self._logged:
                if file.parent.name in parts:
                    self._logged[file] += 1
                    if self._logged[file] > self._kills[file]:
                        self._kills[file] = self._logged[file]
                        seen.append((file, self._kills[file]))
        for file, kills in seen:
            log.info("scope_oom_kill_seen", file=str(file), oom_kills=kills, source="kernel log")

    def _hot_files(self) -> list[Path]:
        """The files to read now without a notification, dropping those quiet
        long enough."""
        now = time.monotonic()
        with self._lock:
            for file in [f for f, until in self._hot.items() if until <= now]:
                del self._hot[file]
            return list(self._hot)

    def _run(self) -> None:
        assert self.fd is not None
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        if self._kmsg is not None:
            poller.register(self._kmsg, select.POLLIN)
        while True:
            hot = self._hot_files()
            timeout_ms = max(1, round(self.POLL_SECONDS * 1000)) if hot else None
            ready = {fd for fd, _ev in poller.poll(timeout_ms)}
            if self._stop_r in ready:
                return
            if self._kmsg is not None and self._kmsg in ready:
                try:
                    records = kmsg.read_records(self._kmsg)
                except OSError as e:
                    log.warning("kernel_log_read_failed", error=str(e))
                    poller.unregister(self._kmsg)
                    records = []
                for record in records:
                    self.kernel_record(record)
            touched: list[Path] = []
            if self.fd in ready:
                try:
                    data = os.read(self.fd, 64 * 1024)
                except BlockingIOError:
                    data = b""
                except OSError:
                    return
                with self._lock:
                    for wd, mask in inotify.parse_events(data):
                        file = self._files.get(wd)
                        if file is not None and file not in touched:
                            touched.append(file)
                        if mask & inotify.IN_IGNORED:  # the cgroup was removed: its count stays until unwatch()
                            self._files.pop(wd, None)
            for file in touched + [f for f in hot if f not in touched]:
                self._refresh(file)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._stop_w, b"x")
            thread.join()
        with self._lock:
            for fd in (self.fd, self._stop_r, self._stop_w, self._kmsg):
                if fd is not None and fd >= 0:
                    os.close(fd)
            self.fd, self._stop_r, self._stop_w, self._kmsg = None, -1, -1, None
            self._files.clear()
            self._kills.clear()
            self._counts.clear()
            self._hot.clear()
            self._logged.clear()


# ---------------------------------------------------------------- the driver


class SystemdDriver:
    """The CgroupDriver protocol through systemd's D-Bus API."""

    name = DRIVER_NAME

    def __init__(
        self, conn: Connection, version: int, *, cgroup_root: Path = DEFAULT_ROOT, mountinfo: Path = MOUNTINFO
    ) -> None:
        self._conn = conn
        self.version = version
        # where this process sees the cgroup hierarchies (injectable for tests)
        self._cgroup_root = cgroup_root
        self._mountinfo = mountinfo
        self._cached_layout: Layout | None = None
        # the OOM kills of every scope this driver knows, beyond its removal
        self._oom = OomWatch()

    @classmethod
    async def connect(
        cls, address: str | None = None, *, cgroup_root: Path = DEFAULT_ROOT, mountinfo: Path = MOUNTINFO
    ) -> SystemdDriver:
        conn = await dbus.open_connection(address)
        try:
            version = parse_version(await conn.get_property(dbus.SYSTEMD_PATH, dbus.MANAGER_INTERFACE, VERSION))
        except BaseException:
            await conn.aclose()
            raise
        return cls(conn, version, cgroup_root=cgroup_root, mountinfo=mountinfo)

    async def aclose(self) -> None:
        self._oom.close()
        await self._conn.aclose()

    def describe(self) -> str:
        found = self._layout()
        via = "D-Bus" if self._conn.is_bus else "private socket"
        return f"systemd {self.version} ({via}), {found.describe() if found else 'cgroup layout unknown'}"

    # -- create ------------------------------------------------------------

    def _base_properties(self, spec: ScopeSpec, pid: int) -> list[Property]:
        return [
            (PIDS, ("au", [pid])),
            (SLICE, ("s", spec.slice)),
            (DESCRIPTION, ("s", spec.description)),
            (DELEGATE, ("b", True)),
            (COLLECT_MODE, ("s", COLLECT_INACTIVE_OR_FAILED)),
            (OOM_POLICY, ("s", OOM_CONTINUE)),
            # a scope needs no ordering against shutdown/sysinit; supd stops it itself
            (DEFAULT_DEPENDENCIES, ("b", False)),
            (MEMORY_ACCOUNTING, ("b", True)),
            (CPU_ACCOUNTING, ("b", True)),
            (TASKS_ACCOUNTING, ("b", True)),
        ]

    async def create(self, spec: ScopeSpec, pid: int) -> tuple[CgroupRef, list[str]]:
        props, warnings = gate_by_version(
            spec.unit,
            quiet_gate(self._base_properties(spec, pid), self.version) + translate.systemd_properties(spec.resources),
            self.version,
        )
        if spec.devices is not None:
            props += device_properties(spec.unit, spec.devices, self.version)
        reset_done = False
        while True:
            try:
                (job,) = await self._conn.call(
                    MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", (spec.scope, JOB_MODE_FAIL, props, [])
                )
            except DBusConnectionError:
                # the call may have reached systemd before the connection broke
                with anyio.CancelScope(shield=True):
                    await self._stop_quietly(spec.scope)
                raise
            except DBusError as e:
                if e.name == ERR_UNIT_EXISTS and not reset_done:
                    # a failed leftover of an earlier run blocks the name until reset
                    reset_done = True
                    await self._ignore_no_such_unit("ResetFailedUnit", spec.scope)
                    continue
                refused = refused_property(e, props)
                if refused is None:
                    raise CgroupError(spec.scope, None, f"systemd refused StartTransientUnit: {e}") from e
                log.warning("systemd_property_refused", unit=spec.unit, property=refused, error=str(e))
                warnings.append(_warning(spec.unit, refused, f"refused by systemd {self.version} ({e.message})"))
                props = [p for p in props if p[0] != refused]
                continue
            except BaseException:
                # cancelled or disconnected with the call in flight: the scope may exist
                with anyio.CancelScope(shield=True):
                    await self._stop_quietly(spec.scope)
                raise
            break
        try:
            result = await self._wait_job(job, spec.scope, "start")
            if result != JOB_DONE:
                raise CgroupError(
                    spec.scope, None,
                    f"start job {job} ended with result {result!r}, expected 'done'",
                )  # fmt: skip
            ref = await self._ref_for(spec)
            self._unwatch_oom(ref)  # a new scope: nothing of an earlier one with its path
            self._watch_oom(ref)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop_quietly(spec.scope)
            raise
        log.info("scope_created", unit=spec.unit, scope=spec.scope, pid=pid, paths=[str(p) for _, p in ref.paths])
        return ref, warnings

    async def _wait_job(self, job: str, scope: str, what: str) -> str:
        try:
            return await self._conn.wait_job(job, JOB_TIMEOUT)
        except TimeoutError as e:
            raise CgroupError(scope, None, f"{what} job {job} did not finish within {JOB_TIMEOUT:g}s") from e

    async def _ref_for(self, spec: ScopeSpec) -> CgroupRef:
        (unit_path,) = await self._conn.call(MANAGER, "GetUnit", "s", (spec.scope,))
        control_group = await self._conn.get_property(unit_path, dbus.SCOPE_INTERFACE, CONTROL_GROUP)
        return self._make_ref(spec.unit, spec.scope, spec.slice, control_group)

    def _make_ref(self, unit: str, scope: str, slice_: str, control_group: str) -> CgroupRef:
        paths: tuple[tuple[str, Path], ...] = ()
        if control_group:
            found = self._layout()
            hierarchies = found.hierarchies() if found is not None else ()
            paths = tuple((k, p) for k, p in scope_paths(control_group, hierarchies) if p.is_dir())
        return CgroupRef(unit=unit, scope=scope, slice=slice_, paths=paths, driver=DRIVER_NAME)

    def _layout(self) -> Layout | None:
        # detected once: the cgroup mounts do not change under a running supd
        if self._cached_layout is None:
            try:
                self._cached_layout = layout.detect(self._cgroup_root, self._mountinfo)
            except (OSError, CgroupError) as e:
                log.warning("cgroup_layout_unknown", root=str(self._cgroup_root), error=str(e))
        return self._cached_layout

    # -- update ------------------------------------------------------------

    async def update(self, ref: CgroupRef, resources: Resources) -> list[str]:
        props, warnings = gate_by_version(
            ref.unit, translate.systemd_properties(resources, clear_unset=True), self.version
        )
        while props:
            try:
                await self._conn.call(MANAGER, "SetUnitProperties", "sba(sv)", (ref.scope, True, props))
                break
            except DBusError as e:
                refused = refused_property(e, props)
                if refused is None:
                    raise CgroupError(ref.scope, None, f"systemd refused SetUnitProperties: {e}") from e
                warnings.append(_warning(ref.unit, refused, f"refused by systemd {self.version} ({e.message})"))
                props = [p for p in props if p[0] != refused]
        return warnings

    # -- freeze / thaw -------------------------------------------------------

    async def freeze(self, ref: CgroupRef) -> None:
        await self._freezer(ref, "FreezeUnit", True)

    async def thaw(self, ref: CgroupRef) -> None:
        await self._freezer(ref, "ThawUnit", False)

    async def _freezer(self, ref: CgroupRef, method: str, frozen: bool) -> None:
        if self.version >= FREEZE_MIN_VERSION:
            try:
                await self._conn.call(MANAGER, method, "s", (ref.scope,))
                return
            except DBusError as e:
                if e.name != ERR_NOT_SUPPORTED:
                    raise CgroupError(ref.scope, None, f"{method} failed: {e}") from e
                log.info("systemd_freeze_unsupported", unit=ref.unit, method=method, error=e.message)
        await _path_freeze(ref, frozen)

    # -- kill / remove -------------------------------------------------------

    async def kill(self, ref: CgroupRef, sig: int) -> None:
        try:
            await self._conn.call(MANAGER, "KillUnit", "ssi", (ref.scope, KILL_WHO_ALL, int(sig)))
        except DBusError as e:
            if e.name == ERR_NO_SUCH_UNIT:
                return  # the scope already ended with its last process
            raise CgroupError(ref.scope, None, f"KillUnit {signal.Signals(sig).name} failed: {e}") from e
        if sig == signal.SIGKILL:
            await self._wait_empty(ref, KILL_TIMEOUT)

    async def _wait_empty(self, ref: CgroupRef, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            while True:
                if ref.paths:
                    if not self.pids(ref):
                        return
                elif not await self._unit_exists(ref.scope):
                    return
                await anyio.sleep(POLL_INTERVAL)
        raise CgroupError(ref.scope, None, f"processes left {timeout:g}s after SIGKILL: {self.pids(ref)}")

    async def _unit_exists(self, scope: str) -> bool:
        try:
            await self._conn.call(MANAGER, "GetUnit", "s", (scope,))
        except DBusError as e:
            if e.name == ERR_NO_SUCH_UNIT:
                return False
            raise
        return True

    async def remove(self, ref: CgroupRef) -> None:
        tree.forget(ref)
        self._unwatch_oom(ref)
        await self._stop(ref.scope)
        await self._ignore_no_such_unit("ResetFailedUnit", ref.scope)
        log.info("scope_removed", unit=ref.unit, scope=ref.scope)

    async def _stop(self, scope: str) -> None:
        try:
            (job,) = await self._conn.call(MANAGER, "StopUnit", "ss", (scope, JOB_MODE_FAIL))
        except DBusError as e:
            if e.name == ERR_NO_SUCH_UNIT:
                return
            raise CgroupError(scope, None, f"StopUnit failed: {e}") from e
        result = await self._wait_job(job, scope, "stop")
        if result != JOB_DONE:
            raise CgroupError(scope, None, f"stop job {job} ended with result {result!r}, expected 'done'")

    async def _stop_quietly(self, scope: str) -> None:
        try:
            await self._stop(scope)
            await self._ignore_no_such_unit("ResetFailedUnit", scope)
        except (CgroupError, DBusError) as e:
            log.warning("scope_cleanup_failed", scope=scope, error=str(e))

    async def _ignore_no_such_unit(self, method: str, scope: str) -> None:
        try:
            await self._conn.call(MANAGER, method, "s", (scope,))
        except DBusError as e:
            if e.name != ERR_NO_SUCH_UNIT and not (method == "ResetFailedUnit" and e.name == ERR_INVALID_ARGS):
                raise CgroupError(scope, None, f"{method} failed: {e}") from e

    # -- reading ------------------------------------------------------------

    def pids(self, ref: CgroupRef) -> list[int]:
        return tree.pids_in(ref)

    def stats(self, ref: CgroupRef) -> CgroupStats:
        """The scope's files, with the OOM kills seen while it lived when
        systemd has removed it already."""
        found = tree.stats(ref)
        file = self._watch_oom(ref)
        seen = self._oom.kills(file) if file is not None else None
        if seen is None:
            return found
        kills = seen if found.oom_kills is None else max(found.oom_kills, seen)
        return dataclasses.replace(found, oom_kills=kills)

    # -- OOM watch -----------------------------------------------------------

    @staticmethod
    def _memory_events(ref: CgroupRef) -> Path | None:
        unified = ref.path(UNIFIED)
        return None if unified is None else unified / tree.MEMORY_EVENTS

    def _watch_oom(self, ref: CgroupRef) -> Path | None:
        """Follow the scope's memory.events from first use on (create,
        adoption); returns the file if it is followed, None where there is
        none (no cgroup2 memory controller)."""
        file = self._memory_events(ref)
        if file is None or self._oom.watching(file):
            return file
        if not file.exists():
            return None
        try:
            self._oom.watch(file)
        except CgroupError as e:
            if file.exists():
                log.warning("scope_oom_watch_failed", unit=ref.unit, error=str(e))
            return None
        return file

    def _unwatch_oom(self, ref: CgroupRef) -> None:
        file = self._memory_events(ref)
        if file is not None:
            self._oom.unwatch(file)

    async def unit_stats(self, ref: CgroupRef) -> CgroupStats:
        """Stats from the unit's properties, for when the cgroup files are not
        visible here (supd in another cgroup namespace than systemd)."""
        unit_path = await self._unit_path(ref.scope)

        async def prop(name: str) -> int | None:
            value = await self._conn.get_property(unit_path, dbus.SCOPE_INTERFACE, name)
            return None if value == UINT64_MAX else int(value)

        frozen = False
        if self.version >= FREEZE_MIN_VERSION:
            frozen = await self._conn.get_property(unit_path, dbus.UNIT_INTERFACE, FREEZER_STATE) == "frozen"
        return CgroupStats(
            memory_current=await prop(MEMORY_CURRENT),
            cpu_usage_ns=await prop(CPU_USAGE_NSEC),
            pids_current=await prop(TASKS_CURRENT),
            frozen=frozen,
        )

    async def _unit_path(self, scope: str) -> str:
        try:
            (unit_path,) = await self._conn.call(MANAGER, "GetUnit", "s", (scope,))
        except DBusError as e:
            raise CgroupError(scope, None, f"GetUnit failed: {e}") from e
        return str(unit_path)

    async def get_unit_property(self, ref: CgroupRef, interface: str, name: str) -> Any:
        """One property of the scope (tests, `supctl status` details)."""
        return await self._conn.get_property(await self._unit_path(ref.scope), interface, name)

    def find(self, spec: ScopeSpec) -> CgroupRef | None:
        """The scope's cgroup, found on the filesystem (this method is sync): the
        slice path systemd uses, in every visible hierarchy."""
        from supervisor.cgroups.names import slice_dirs

        control_group = "/" + "/".join([*slice_dirs(spec.slice), spec.scope])
        ref = self._make_ref(spec.unit, spec.scope, spec.slice, control_group)
        return ref if ref.paths else None

    async def afind(self, spec: ScopeSpec) -> CgroupRef | None:
        """`find` through systemd: GetUnit + ControlGroup; None if not loaded."""
        try:
            ref = await self._ref_for(spec)
            self._unwatch_oom(ref)  # a new scope: nothing of an earlier one with its path
            self._watch_oom(ref)
            return ref
        except DBusError as e:
            if e.name == ERR_NO_SUCH_UNIT:
                return None
            raise CgroupError(spec.scope, None, f"GetUnit failed: {e}") from e

    async def remove_stale(self, keep: Collection[str], owned: Collection[CgroupRef] = ()) -> list[str]:
        """Stop supd-*.scope units in supd's slices whose unit is not in `keep`,
        but only those this supd's own records name (`owned`) or that hold no
        process; others belong to someone else and are left, with a warning."""
        (units,) = await self._conn.call(
            MANAGER, "ListUnitsByPatterns", "asas", ([], [f"{SCOPE_PREFIX}*{SCOPE_SUFFIX}"])
        )
        named = {ref.scope for ref in owned if ref.driver == DRIVER_NAME}
        removed: list[str] = []
        for entry in units:
            scope = entry[0]
            unit = unit_of_scope(scope)
            if unit is None or unit in keep:
                continue
            if not await self._in_supd_slice(str(entry[6])):
                continue
            try:
                if scope not in named:
                    found = await self._control_group(str(entry[6]))
                    pids = self.pids(self._make_ref(unit, scope, "", found)) if found else []
                    if pids or not found:
                        log.warning("stale_scope_not_ours", scope=scope, pids=pids)
                        continue
                await self._stop(scope)
                await self._ignore_no_such_unit("ResetFailedUnit", scope)
            except (CgroupError, DBusError, OSError) as e:
                log.warning("stale_scope_remove_failed", scope=scope, error=str(e))
                continue
            log.info("stale_scope_removed", scope=scope)
            removed.append(scope)
        return removed

    async def _control_group(self, unit_path: str) -> str:
        try:
            return str(await self._conn.get_property(unit_path, dbus.SCOPE_INTERFACE, CONTROL_GROUP))
        except DBusError:
            return ""

    # -- ownership (see ownership.py) -----------------------------------------

    def _roots(self) -> dict[str, Path]:
        """Where systemd's own root ("/", the parent of supd.slice) appears in
        each hierarchy supd sees whole."""
        found = self._layout()
        if found is None:
            return {}
        return {h.key: h.mount for h in found.hierarchies() if h.mount_root == "/"}

    def lock_directory(self) -> Path | None:
        """The hierarchy root holding systemd's supd.slice: the directory a
        cgroupfs supd with `cgroup_root = "/"` locks too (both own /supd.slice),
        chosen among the hierarchies cgroupfs uses."""
        from supervisor.cgroups.cgroupfs import V1_USED

        roots = {k: p for k, p in self._roots().items() if k == UNIFIED or set(k.split(",")) & V1_USED}
        return ownership.lock_directory(roots)

    def scope_path_problem(self, unit: str, ref: CgroupRef) -> str | None:
        roots = self._roots()
        for key, path in ref.paths:
            problem = ownership.scope_path_problem(unit, key, path, roots)
            if problem is not None:
                return problem
        return None

    async def _in_supd_slice(self, unit_path: str) -> bool:
        try:
            slice_ = await self._conn.get_property(unit_path, dbus.SCOPE_INTERFACE, SLICE)
        except DBusError:
            return False
        return slice_ == ROOT_SLICE or (slice_.startswith("supd-") and slice_.endswith(".slice"))


async def _path_freeze(ref: CgroupRef, frozen: bool) -> None:
    """Fallback for systemd < 246 or without cgroup2 freezing."""
    if frozen:
        await tree.freeze(ref)
    else:
        await tree.thaw(ref)
