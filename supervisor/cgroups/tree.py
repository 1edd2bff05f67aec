"""Path-level cgroup operations shared by every driver.

Once a scope exists, freezing, killing, listing pids, reading stats and OOM
counts only need its directories (crun's cgroup-utils, runc's fs2): they live
here once. Errors carry the path and the data.

Waits are event-driven where the kernel offers events: cgroup.events (v2) is
modified when `frozen` or `populated` changes, which wakes an inotify watch;
a short bounded re-check covers a missed event. The v1 freezer has no event,
so its confirmation polls with a growing interval under a deadline.
"""

from __future__ import annotations

import functools
import errno
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import structlog

from supervisor import inotify
from supervisor.cgroups.driver import UNIFIED, CgroupError, CgroupRef, CgroupStats

log = structlog.get_logger()

CGROUP_PROCS = "cgroup.procs"
CGROUP_EVENTS = "cgroup.events"
CGROUP_FREEZE = "cgroup.freeze"
CGROUP_KILL = "cgroup.kill"
CPU_STAT = "cpu.stat"
MEMORY_CURRENT = "memory.current"
MEMORY_PEAK = "memory.peak"
MEMORY_MAX = "memory.max"
MEMORY_HIGH = "memory.high"
MEMORY_EVENTS = "memory.events"
PIDS_CURRENT = "pids.current"
PIDS_MAX = "pids.max"
V1_FREEZER_STATE = "freezer.state"
V1_MEMORY_USAGE = "memory.usage_in_bytes"
V1_MEMORY_MAX_USAGE = "memory.max_usage_in_bytes"
V1_MEMORY_LIMIT = "memory.limit_in_bytes"
V1_MEMORY_SOFT_LIMIT = "memory.soft_limit_in_bytes"
V1_MEMORY_OOM_CONTROL = "memory.oom_control"
V1_CPUACCT_USAGE = "cpuacct.usage"

FROZEN = "FROZEN"
THAWED = "THAWED"
# v1 reports "no limit" as the largest page-aligned long.
V1_UNLIMITED_FLOOR = 2**62

DEFAULT_TIMEOUT = 10.0
# Re-check interval when waiting on inotify, in case an event was missed.
EVENT_RECHECK = 0.1
RMDIR_ATTEMPTS = 8

# --- raw file access


def read(path: Path, name: str) -> str:
    file = path / name
    try:
        with open(file) as f:
            return f.read()
    except OSError as e:
        raise CgroupError(file, None, f"cannot read: {e.strerror}", errno=e.errno) from e


def read_optional(path: Path | None, name: str) -> str | None:
    """The file's content, or None when the file (or the controller) is absent."""
    if path is None:
        return None
    try:
        with open(path / name) as f:
            return f.read()
    except OSError as e:
        # ENODEV: the file exists but the controller went away (runc: "Undefined").
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENODEV):
            return None
        raise CgroupError(path / name, None, f"cannot read: {e.strerror}") from e


def write(path: Path, name: str, value: str) -> None:
    """Write `value` in one write(2); the kernel parses the whole buffer."""
    file = path / name
    try:
        fd = os.open(file, os.O_WRONLY)
    except OSError as e:
        raise CgroupError(file, value, f"cannot open for writing: {e.strerror}", errno=e.errno) from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise CgroupError(file, value, f"kernel refused the write: {e.strerror}", errno=e.errno) from e
    finally:
        os.close(fd)


def keyed(text: str) -> dict[str, str]:
    """ "key value" lines (cgroup.events, memory.events, cpu.stat, oom_control)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k:
            out[k] = v.strip()
    return out


# --- processes


def procs(path: Path) -> list[int]:
    """Pids directly in this cgroup (not its children)."""
    return [int(x) for x in read(path, CGROUP_PROCS).split()]


def walk(path: Path) -> Iterator[Path]:
    """The cgroup and every descendant, children before parents (rmdir order)."""
    try:
        # scandir's d_type spares a stat(2) per cgroup file (dozens per cgroup).
        with os.scandir(path) as entries:
            children = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    for child in children:
        yield from walk(child)
    yield path


def procs_recursive(path: Path) -> set[int]:
    found: set[int] = set()
    for cg in walk(path):
        try:
            found.update(procs(cg))
        except CgroupError:
            if cg.exists():
                raise
    return found


def pids_in(ref: CgroupRef) -> list[int]:
    """Every pid in the scope, in any hierarchy, children cgroups included."""
    found: set[int] = set()
    for _key, path in ref.paths:
        found |= procs_recursive(path)
    return sorted(found)


def is_populated(ref: CgroupRef) -> bool:
    unified = ref.path(UNIFIED)
    events = read_optional(unified, CGROUP_EVENTS)
    if events is not None:
        return keyed(events).get("populated") == "1"
    return bool(pids_in(ref))


# --- event-driven waits on cgroup.events (through the shared inotify instance)


def watch_file(file: Path) -> inotify.Watch:
    """An inotify watch for modifications of a cgroup file (a polling watch
    when inotify has none to give)."""
    try:
        return inotify.shared().watch(file, inotify.IN_MODIFY)
    except OSError as e:
        raise CgroupError(file, None, f"cannot watch it: {e.strerror}") from e


async def wait_events(directory: Path, key: str, want: str, timeout: float) -> bool:
    """Wait until cgroup.events says `key want`; False on timeout."""
    # Usually the kernel has settled by the time we look (a freeze of sleeping
    # tasks is immediate). Only then is an inotify watch worth it.
    if keyed(read(directory, CGROUP_EVENTS)).get(key) == want:
        return True
    watch = watch_file(directory / CGROUP_EVENTS)
    try:
        with anyio.move_on_after(timeout):
            while True:
                # Watch first, then check: a change between the two still wakes us.
                if keyed(read(directory, CGROUP_EVENTS)).get(key) == want:
                    return True
                await watch.wait(EVENT_RECHECK)
        return keyed(read(directory, CGROUP_EVENTS)).get(key) == want
    finally:
        watch.close()


async def _poll_until(check: Callable[[], bool], timeout: float) -> bool:
    """Poll `check()` with a growing interval (1 ms .. 50 ms) until true or timeout."""
    delay = 0.001
    with anyio.move_on_after(timeout):
        while not check():
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True
    return check()


# --- freeze / thaw


def _v2_freezable(ref: CgroupRef) -> Path | None:
    unified = ref.path(UNIFIED)
    if unified is not None and (unified / CGROUP_FREEZE).exists():
        return unified
    return None


def is_frozen(ref: CgroupRef) -> bool:
    unified = _v2_freezable(ref)
    if unified is not None:
        return keyed(read(unified, CGROUP_EVENTS)).get("frozen") == "1"
    freezer = ref.hierarchy_for("freezer")
    state = read_optional(freezer, V1_FREEZER_STATE)
    return state is not None and state.strip() == FROZEN


def frozen_by_parent(ref: CgroupRef) -> bool:
    """The kernel holds the scope frozen because an ancestor is frozen (someone
    froze supd.slice or above), whatever the scope's own setting says."""
    # On a hybrid host both freezers exist (supd uses cgroup.freeze; someone
    # else may use the v1 freezer.state): either one holds the processes.
    unified = _v2_freezable(ref)
    if unified is not None:
        own = read_optional(unified, CGROUP_FREEZE)
        effective = keyed(read(unified, CGROUP_EVENTS)).get("frozen") == "1"
        if effective and (own or "0").strip() == "0":
            return True
    freezer = ref.hierarchy_for("freezer")
    parent = read_optional(freezer, "freezer.parent_freezing")
    return parent is not None and parent.strip() == "1"


async def freeze(ref: CgroupRef, timeout: float = DEFAULT_TIMEOUT) -> None:
    await _set_frozen(ref, True, timeout)


async def thaw(ref: CgroupRef, timeout: float = DEFAULT_TIMEOUT) -> None:
    await _set_frozen(ref, False, timeout)


async def _set_frozen(ref: CgroupRef, frozen: bool, timeout: float) -> None:
    unified = _v2_freezable(ref)
    if unified is not None:
        write(unified, CGROUP_FREEZE, "1" if frozen else "0")
        want = "1" if frozen else "0"
        if not await wait_events(unified, "frozen", want, timeout):
            raise CgroupError(unified / CGROUP_EVENTS, None, f"expected 'frozen {want}' within {timeout}s")
        return
    freezer = ref.hierarchy_for("freezer")
    if freezer is None or not (freezer / V1_FREEZER_STATE).exists():
        raise CgroupError(ref.paths[0][1] if ref.paths else "<none>", None, "no freezer: neither cgroup.freeze nor freezer.state")
    target = FROZEN if frozen else THAWED
    write(freezer, V1_FREEZER_STATE, target)

    def settled() -> bool:
        state = read(freezer, V1_FREEZER_STATE).strip()
        if state != target and state == "FREEZING" and frozen:
            # Re-writing FROZEN nudges a freeze that raced a fork.
            write(freezer, V1_FREEZER_STATE, FROZEN)
        return state == target

    if not await _poll_until(settled, timeout):
        raise CgroupError(freezer / V1_FREEZER_STATE, target, f"expected {target} within {timeout}s")


def can_freeze(ref: CgroupRef) -> bool:
    if _v2_freezable(ref) is not None:
        return True
    freezer = ref.hierarchy_for("freezer")
    return freezer is not None and (freezer / V1_FREEZER_STATE).exists()


# --- kill


def signal_pids(pids: list[int], sig: int) -> int:
    """Send `sig` to each pid; a pid already gone (ESRCH) is fine. Returns how many
    were signalled."""
    sent = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
            sent += 1
        except ProcessLookupError:
            pass
    return sent


async def kill_all(ref: CgroupRef, sig: int, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Signal every process in the scope. SIGKILL returns only once the scope is
    empty (or raises CgroupError after `timeout`).

    SIGKILL uses cgroup.kill where the kernel has it (atomic, no fork race).
    Otherwise freeze (so nothing forks behind our back), signal every pid, and
    always thaw, repeating for SIGKILL until nothing is left."""
    unified = ref.path(UNIFIED)
    if sig == signal.SIGKILL and unified is not None and (unified / CGROUP_KILL).exists():
        write(unified, CGROUP_KILL, "1")
        if not await wait_events(unified, "populated", "0", timeout):
            raise CgroupError(unified, None, f"expected the scope to be empty within {timeout}s of cgroup.kill")
        return

    freezable = can_freeze(ref)
    with anyio.move_on_after(timeout):
        while True:
            pids = pids_in(ref)
            if not pids:
                return
            if freezable:
                try:
                    await freeze(ref, timeout=min(timeout, 2.0))
                except CgroupError as e:
                    log.warning("cgroup_kill_freeze_failed", unit=ref.unit, error=str(e))
            try:
                signal_pids(pids_in(ref), sig)
            finally:
                if freezable:
                    await thaw(ref, timeout=timeout)
            if sig != signal.SIGKILL:
                return
            await _poll_until(lambda: not pids_in(ref), 0.5)
    left = pids_in(ref)
    if left:
        raise CgroupError(ref.paths[0][1], None, f"expected the scope to be empty within {timeout}s; pids left: {left}")


# --- stats and OOM


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    value = text.strip()
    if value in ("", "max"):
        return None
    return int(value)


def _v1_limit(text: str | None) -> int | None:
    value = _int_or_none(text)
    if value is None or value >= V1_UNLIMITED_FLOOR:
        return None
    return value


def oom_kills(ref: CgroupRef) -> int | None:
    """How many processes the kernel's OOM killer killed in the scope."""
    v1 = ref.hierarchy_for("memory")
    if v1 is not None:
        control = read_optional(v1, V1_MEMORY_OOM_CONTROL)
        if control is not None and "oom_kill" in keyed(control):
            return int(keyed(control)["oom_kill"])
    events = read_optional(ref.path(UNIFIED), MEMORY_EVENTS)
    if events is not None:
        return int(keyed(events).get("oom_kill", "0"))
    return None


def stats(ref: CgroupRef) -> CgroupStats:
    unified = ref.path(UNIFIED)
    v1_memory = ref.hierarchy_for("memory")
    v1_cpuacct = ref.hierarchy_for("cpuacct")
    v1_pids = ref.hierarchy_for("pids")

    if v1_memory is not None:
        memory_current = _int_or_none(read_optional(v1_memory, V1_MEMORY_USAGE))
        memory_peak = _int_or_none(read_optional(v1_memory, V1_MEMORY_MAX_USAGE))
        memory_max = _v1_limit(read_optional(v1_memory, V1_MEMORY_LIMIT))
        memory_high = _v1_limit(read_optional(v1_memory, V1_MEMORY_SOFT_LIMIT))
    else:
        memory_current = _int_or_none(read_optional(unified, MEMORY_CURRENT))
        memory_peak = _int_or_none(read_optional(unified, MEMORY_PEAK))
        memory_max = _int_or_none(read_optional(unified, MEMORY_MAX))
        memory_high = _int_or_none(read_optional(unified, MEMORY_HIGH))

    cpu_usage_ns: int | None = None
    if v1_cpuacct is not None:
        cpu_usage_ns = _int_or_none(read_optional(v1_cpuacct, V1_CPUACCT_USAGE))
    if cpu_usage_ns is None:
        cpu_stat = read_optional(unified, CPU_STAT)
        if cpu_stat is not None and "usage_usec" in keyed(cpu_stat):
            cpu_usage_ns = int(keyed(cpu_stat)["usage_usec"]) * 1000

    pids_home = v1_pids if v1_pids is not None else unified
    return CgroupStats(
        memory_current=memory_current,
        memory_peak=memory_peak,
        memory_max=memory_max,
        memory_high=memory_high,
        cpu_usage_ns=cpu_usage_ns,
        pids_current=_int_or_none(read_optional(pids_home, PIDS_CURRENT)),
        pids_max=_int_or_none(read_optional(pids_home, PIDS_MAX)),
        oom_kills=oom_kills(ref),
        frozen=is_frozen(ref) if can_freeze(ref) else False,
    )


def _read_fast(path: str) -> bytes | None:
    # os.open/os.read on a ready string path: a quarter of the cost of
    # Path.read_text, which matters when `supctl list` reads 1000 scopes.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def _fast_int(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    value = raw.strip()
    return None if value in (b"", b"max") else int(value)


def _fast_key(raw: bytes | None, key: bytes) -> int | None:
    if raw is None:
        return None
    for line in raw.splitlines():
        name, _, value = line.partition(b" ")
        if name == key:
            return int(value)
    return None


@functools.lru_cache(maxsize=8192)
def _usage_files(ref: CgroupRef) -> tuple[str | None, str | None, str | None, str | None, str | None, bool]:
    """(memory current, memory peak, OOM counter, CPU time, tasks, cpu is v2
    cpu.stat) file paths of a scope, worked out once per scope."""
    unified = ref.path(UNIFIED)
    v1_memory = ref.hierarchy_for("memory")
    v1_cpuacct = ref.hierarchy_for("cpuacct")
    v1_pids = ref.hierarchy_for("pids")
    if v1_memory is not None:
        mem = (f"{v1_memory}/{V1_MEMORY_USAGE}", f"{v1_memory}/{V1_MEMORY_MAX_USAGE}", f"{v1_memory}/{V1_MEMORY_OOM_CONTROL}")
    elif unified is not None:
        mem = (f"{unified}/{MEMORY_CURRENT}", f"{unified}/{MEMORY_PEAK}", f"{unified}/{MEMORY_EVENTS}")
    else:
        mem = (None, None, None)
    if v1_cpuacct is not None:
        cpu, cpu_v2 = f"{v1_cpuacct}/{V1_CPUACCT_USAGE}", False
    elif unified is not None:
        cpu, cpu_v2 = f"{unified}/{CPU_STAT}", True
    else:
        cpu, cpu_v2 = None, False
    pids_home = v1_pids if v1_pids is not None else unified
    pids = f"{pids_home}/{PIDS_CURRENT}" if pids_home is not None else None
    return (*mem, cpu, pids, cpu_v2)


# Listing 1000 units reads 5000 counter files. Re-reading an open cgroup file
# with pread() costs a seventh of open+read+close on this kind of VM, so the
# counters' descriptors are kept open per scope, within a budget of fds (the
# rest fall back to opening each time). `forget()` closes them at removal.
_counter_fds: dict[CgroupRef, tuple[int | None, ...]] = {}
_FD_BUDGET_SHARE = 4  # at most a quarter of the soft RLIMIT_NOFILE


def _fd_budget() -> int:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(8192, soft // _FD_BUDGET_SHARE)


def _open_counters(ref: CgroupRef) -> tuple[int | None, ...] | None:
    fds = _counter_fds.get(ref)
    if fds is not None:
        return fds
    paths = _usage_files(ref)[:5]
    if (len(_counter_fds) + 1) * len(paths) > _fd_budget():
        return None
    opened: list[int | None] = []
    for path in paths:
        try:
            opened.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC) if path else None)
        except OSError:
            opened.append(None)
    _counter_fds[ref] = fds = tuple(opened)
    return fds


def forget(ref: CgroupRef) -> None:
    """Close what usage() keeps open for `ref` (call before removing the scope)."""
    for fd in _counter_fds.pop(ref, ()):
        if fd is not None:
            os.close(fd)


def _pread(fd: int | None) -> bytes | None:
    return None if fd is None else os.pread(fd, 4096, 0)


def usage(ref: CgroupRef) -> CgroupStats:
    """The live counters only (memory current/peak, CPU time, tasks, OOM kills),
    read with as few syscalls as possible: the figures of a unit listing.
    `stats()` adds the limits and the freezer state for a unit's status."""
    fds = _open_counters(ref)
    if fds is not None:
        try:
            raw = [_pread(fd) for fd in fds]
        except OSError:  # the scope went away under us
            forget(ref)
            raw = [_read_fast(p) if p else None for p in _usage_files(ref)[:5]]
    else:
        raw = [_read_fast(p) if p else None for p in _usage_files(ref)[:5]]
    current, peak, oom, cpu, pids = raw
    if _usage_files(ref)[5]:
        usec = _fast_key(cpu, b"usage_usec")
        cpu_usage_ns = None if usec is None else usec * 1000
    else:
        cpu_usage_ns = _fast_int(cpu)
    return CgroupStats(
        memory_current=_fast_int(current),
        memory_peak=_fast_int(peak),
        cpu_usage_ns=cpu_usage_ns,
        pids_current=_fast_int(pids),
        oom_kills=_fast_key(oom, b"oom_kill"),
    )


# --- removal


async def rmdir_tree(path: Path, attempts: int = RMDIR_ATTEMPTS) -> None:
    """Remove a cgroup and its descendants, deepest first. EBUSY right after the
    last process died is normal (the kernel is still tearing it down): retry with
    short growing delays. A process that joined after the kill (an exec or a
    health check whose spawn was already under way) is killed too: everything
    in a scope being removed is the unit's. A missing directory is fine."""
    for cg in list(walk(path)):
        delay = 0.005
        for attempt in range(attempts):
            try:
                os.rmdir(cg)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or attempt == attempts - 1:
                    raise CgroupError(cg, None, f"cannot remove cgroup: {e.strerror}") from e
                late = procs(cg)
                if late:
                    signal_pids(late, signal.SIGKILL)
                await anyio.sleep(delay)
                delay *= 2
