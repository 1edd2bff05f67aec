"""Status objects (`supctl status --json`) and the slice/scope tree. Reads
the cgroup files through the driver; everything else is the daemon's record."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from supervisor.cgroups import tree as cgroup_tree
from supervisor.cgroups.driver import CgroupDriver, CgroupError, CgroupRef, CgroupStats
from supervisor.daemon.events import iso
from supervisor.daemon.unitrun import UnitRun
from supervisor.policy.state import UnitState
from supervisor.units.values import signal_name


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def _stats(driver: CgroupDriver | None, u: UnitRun, *, detail: bool = True) -> CgroupStats | None:
    if driver is None or u.cgroup is None:
        return None
    try:
        # A listing needs only the live counters, read straight off the
        # scope's files (the same for every driver); a status adds the limits.
        return driver.stats(u.cgroup) if detail else cgroup_tree.usage(u.cgroup)
    except (CgroupError, OSError, ValueError):
        return None


def _processes(driver: CgroupDriver | None, u: UnitRun) -> list[dict[str, Any]]:
    if driver is None or u.cgroup is None:
        return [] if u.pid is None else [{"pid": u.pid, "cmdline": cmdline(u.pid)}]
    try:
        pids = sorted(driver.pids(u.cgroup))
    except (CgroupError, OSError):
        pids = [] if u.pid is None else [u.pid]
    return [{"pid": p, "cmdline": cmdline(p)} for p in pids]


def cgroup_display_path(u: UnitRun) -> str | None:
    return None if u.cgroup is None else _display_path(u.cgroup)


@functools.lru_cache(maxsize=8192)
def _display_path(ref: CgroupRef) -> str | None:
    # The slice/scope part is the same in every hierarchy; show it once, like systemd.
    for _key, path in ref.paths:
        text = str(path)
        at = text.find("/supd.slice/")
        return text[at:] if at >= 0 else text
    return None


def unit_status(u: UnitRun, driver: CgroupDriver | None, *, detail: bool = True) -> dict[str, Any]:
    """A status object. Without `detail` (listings, command replies) it has
    DESIGN's keys plus description and enabled: a listing of 1000 units stays
    small and quick. With it, limits, warnings, the driver and the processes."""
    unit = u.unit
    stats = _stats(driver, u, detail=detail)
    last_exit = None
    if u.last_exit is not None:
        last_exit = {"code": u.last_exit.code, "signal": _signal_name(u.last_exit.signal), "reason": u.last_exit.reason}
    # A live scope's counter brings the run's count up to date; once it
    # ended, the count read as it ended stays (its scope is gone).
    oom_run = u.ooms_now(stats.oom_kills if stats is not None and u.cgroup is not None else None)
    status: dict[str, Any] = {
        "name": u.name,
        "state": u.state.value,
        "pid": u.pid,
        "since": iso(u.since),
        "restarts": u.restarts,
        "last_exit": last_exit,
        "error": u.error,
        "file": str(u.file),
        "cgroup": cgroup_display_path(u),
        "frozen": u.state == UnitState.FROZEN,
        "health": u.health,
        "resources": {
            "memory_current": stats.memory_current if stats else None,
            "memory_peak": stats.memory_peak if stats else None,
            "cpu_usage_ns": stats.cpu_usage_ns if stats else None,
            "pids_current": stats.pids_current if stats else None,
            "oom_kills": stats.oom_kills if stats else None,
        },
        "oom_kills": oom_run,
        "oom_kills_total": u.oom_kills_earlier + oom_run,
        "description": unit.unit.description if unit else "",
        # null: the file is invalid, so whether it enables the unit is unknown
        "enabled": unit.unit.enabled if unit else None,
        # {"network", "address", "addresses", "ports"} while on a CNI network, else null
        "network": u.network.to_json() if u.network is not None else None,
    }
    if not detail:
        return status
    # what ran (or last ran): the unit's command with its image's Entrypoint/Cmd applied
    ran = u.effective or unit
    status["command"] = list(ran.exec.argv) if ran is not None else None
    limits = None
    if unit is not None:
        r = unit.resources
        limits = {
            "memory_max": r.memory_max,
            "memory_high": r.memory_high,
            "pids_max": r.pids_max,
            "cpu_quota": r.cpu_quota,
            "cpu_weight": r.cpu_weight,
            "io_weight": r.io_weight,
            "cpuset": r.cpuset,
        }
    parent_frozen = _frozen_by_parent(u)
    status.update(
        {
            # The kernel's truth: a parent frozen by someone else holds the unit
            # frozen whatever supd asked for.
            "frozen": status["frozen"] or parent_frozen,
            "frozen_by_parent": parent_frozen,
            "freeze_reason": "frozen by parent" if parent_frozen and u.state != UnitState.FROZEN else u.freeze_reason,
            "health_output": u.health_output,
            "limits": limits,
            "slice": unit.slice_name if unit else None,
            "container": unit.rootfs is not None if unit else False,
            "driver": driver.name if driver else None,
            "cgroup_driver": driver.describe() if driver else None,
            "warnings": list(u.warnings),
            "processes": _processes(driver, u),
            "tasks_max": stats.pids_max if stats else None,
            "memory_max": stats.memory_max if stats else None,
        }
    )
    return status


def _frozen_by_parent(u: UnitRun) -> bool:
    if u.cgroup is None:
        return False
    try:
        return cgroup_tree.frozen_by_parent(u.cgroup)
    except (CgroupError, OSError, ValueError):
        return False


def _signal_name(sig: int | str | None) -> str | None:
    return sig if sig is None or isinstance(sig, str) else signal_name(sig)


def tree(units: list[UnitRun], driver: CgroupDriver | None) -> dict[str, Any]:
    """supd.slice → unit slices → scopes, with live figures, like systemd-cgls
    with systemd-cgtop's columns."""
    root: dict[str, Any] = {"name": "supd.slice", "children": {}}
    for u in sorted(units, key=lambda x: x.name):
        if u.unit is None:
            continue
        slice_name = u.unit.slice_name
        node = root
        if slice_name != "supd.slice":
            # supd-a-b.slice nests as supd.slice/supd-a.slice/supd-a-b.slice
            parts = slice_name[: -len(".slice")].split("-")
            for i in range(2, len(parts) + 1):
                name = "-".join(parts[:i]) + ".slice"
                node = node["children"].setdefault(name, {"name": name, "children": {}})
        stats = _stats(driver, u, detail=False)
        node["children"][u.unit.scope_name] = {
            "name": u.unit.scope_name,
            "unit": u.name,
            "state": u.state.value,
            "path": cgroup_display_path(u),
            "memory_current": stats.memory_current if stats else None,
            "cpu_usage_ns": stats.cpu_usage_ns if stats else None,
            "tasks": stats.pids_current if stats else None,
            "processes": _processes(driver, u) if u.cgroup is not None else [],
            "children": {},
        }
    return _finish(root)


def _finish(node: dict[str, Any]) -> dict[str, Any]:
    children = [_finish(c) for c in node["children"].values()]
    node = dict(node, children=children)
    if "unit" not in node:  # a slice: sum its children
        for key in ("memory_current", "cpu_usage_ns", "tasks"):
            values = [c.get(key) for c in children if c.get(key) is not None]
            node[key] = sum(values) if values else None
        node.setdefault("processes", [])
    return node
