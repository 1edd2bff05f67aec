"""The cgroup driver contract: what every driver (cgroupfs, systemd) offers.

Pure: data types and a Protocol, no I/O. The protocol stays small on purpose
(crun's create/update/remove, plus the verbs the daemon needs); everything
that works on a cgroup path once it exists (freeze, kill, pids, stats, OOM
count) lives in `tree.py` and drivers delegate to it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from supervisor.cgroups import names
from supervisor.cgroups.devices import DevicePolicy, DeviceRule, container_policy
from supervisor.units.model import Resources, Unit

# Hierarchy key of the cgroup2 tree (pure v2 root, or the hybrid `unified` mount).
UNIFIED = "unified"


class CgroupError(Exception):
    """A cgroup operation failed; carries the path, what was written/read, and why."""

    def __init__(self, path: Path | str, data: str | None, reason: str, *, errno: int | None = None) -> None:
        self.path = str(path)
        self.data = data
        self.reason = reason
        # The kernel's errno where there was one: EBUSY (no internal processes,
        # a limit below usage) and EINVAL/ERANGE (a value it refuses) need
        # different handling by callers.
        self.errno = errno
        if data is None:
            message = f"{self.path}: {reason}"
        else:
            message = f"{self.path}: {reason} (data: {data!r})"
        super().__init__(message)


@dataclass(frozen=True)
class ScopeSpec:
    """What a driver needs to make a unit's scope."""

    unit: str  # the unit name, "web"
    slice: str  # systemd slice unit name: "supd.slice" or "supd-web.slice"
    scope: str  # "supd-web.scope"
    description: str
    resources: Resources
    # Device access: None keeps full access (plain units); a policy denies
    # every device it does not allow, set before any process enters.
    devices: DevicePolicy | None = None

    @classmethod
    def for_unit(cls, unit: Unit, extra_devices: Iterable[DeviceRule] = ()) -> ScopeSpec:
        """A container gets docker's default device rules plus `extra_devices`
        (the unit's `[rootfs].devices`, resolved on the host)."""
        return cls(
            unit=unit.name,
            slice=names.slice_name(unit.unit.slice),
            scope=names.scope_name(unit.name),
            description=unit.unit.description or f"supd unit {unit.name}",
            resources=unit.resources,
            devices=None if unit.rootfs is None else container_policy(extra_devices),
        )


@dataclass(frozen=True)
class CgroupRef:
    """Where a unit's scope lives, in every hierarchy the driver used.

    `paths` maps a hierarchy key ("unified", "memory", "cpu,cpuacct", "name=systemd"
    ...) to the scope directory in that hierarchy. It is stored in state files so
    a restarted supd can re-adopt a running unit.
    """

    unit: str
    scope: str
    slice: str
    paths: tuple[tuple[str, Path], ...]
    driver: str  # "cgroupfs" | "systemd"

    def path(self, key: str) -> Path | None:
        """The scope directory in hierarchy `key`, or None if the ref has none there."""
        for k, p in self.paths:
            if k == key:
                return p
        return None

    def hierarchy_for(self, controller: str) -> Path | None:
        """The scope directory in the v1 hierarchy that carries `controller`
        (handles co-mounts like "cpu,cpuacct")."""
        for k, p in self.paths:
            if k != UNIFIED and controller in k.split(","):
                return p
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "scope": self.scope,
            "slice": self.slice,
            "paths": {k: str(p) for k, p in self.paths},
            "driver": self.driver,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CgroupRef:
        """Rebuild a ref from `to_json()` output; rejects paths that are not clean
        absolute paths (a state file must not steer us outside the cgroup tree)."""
        try:
            raw_paths = data["paths"]
            paths: list[tuple[str, Path]] = []
            for key, value in raw_paths.items():
                if not isinstance(value, str) or not value.startswith("/") or "/../" in value + "/" or "//" in value:
                    raise CgroupError(str(value), None, f"paths[{key!r}]: expected a clean absolute path")
                paths.append((str(key), Path(value)))
            return cls(
                unit=str(data["unit"]),
                scope=str(data["scope"]),
                slice=str(data["slice"]),
                paths=tuple(sorted(paths)),
                driver=str(data["driver"]),
            )
        except (KeyError, AttributeError, TypeError) as e:
            raise CgroupError("<state>", json.dumps(data, default=str), f"expected a CgroupRef object: {e!r}") from e


@dataclass(frozen=True)
class CgroupStats:
    """Observed usage of a scope; None where the host can't tell."""

    memory_current: int | None = None
    memory_peak: int | None = None
    memory_max: int | None = None  # None also means "no limit"
    memory_high: int | None = None
    cpu_usage_ns: int | None = None
    pids_current: int | None = None
    pids_max: int | None = None
    oom_kills: int | None = None
    frozen: bool = False


@runtime_checkable
class CgroupDriver(Protocol):
    """One driver per host setup; see docs/architecture.md "cgroups"."""

    name: str  # "cgroupfs" | "systemd"

    async def create(self, spec: ScopeSpec, pid: int) -> tuple[CgroupRef, list[str]]:
        """Create the scope with its limits and move `pid` into it.
        Returns the ref and warnings naming unit and key for limits not applied."""
        ...

    async def update(self, ref: CgroupRef, resources: Resources) -> list[str]:
        """Apply `resources` to a live scope; unset resources clear their limit."""
        ...

    async def freeze(self, ref: CgroupRef) -> None: ...

    async def thaw(self, ref: CgroupRef) -> None: ...

    async def kill(self, ref: CgroupRef, sig: int) -> None:
        """Signal every process in the scope; SIGKILL waits until it is empty."""
        ...

    async def remove(self, ref: CgroupRef) -> None:
        """Kill what is left and remove the scope everywhere."""
        ...

    def stats(self, ref: CgroupRef) -> CgroupStats: ...

    def pids(self, ref: CgroupRef) -> list[int]: ...

    def find(self, spec: ScopeSpec) -> CgroupRef | None:
        """The ref of an existing scope for `spec` (re-adoption), or None."""
        ...

    async def remove_stale(self, keep: Collection[str], owned: Collection[CgroupRef] = ()) -> list[str]:
        """Remove scopes of units not in `keep` (only supd-*.scope under supd's
        slices), and of those only the ones `owned` (this supd's records) names
        or that hold no process; returns the scope names removed."""
        ...

    def lock_directory(self) -> Path | None:
        """The cgroup directory the one-supd-per-root lock is taken on
        (cgroups/ownership.py), None if the driver cannot see one."""
        ...

    def scope_path_problem(self, unit: str, ref: CgroupRef) -> str | None:
        """Why a recorded ref is not a scope of `unit` inside supd's slices
        (a state record must never steer supd there), or None."""
        ...

    def describe(self) -> str:
        """e.g. "cgroupfs, hybrid (v1 controllers + cgroup2)"."""
        ...

    async def aclose(self) -> None:
        """Release what the driver holds (a D-Bus connection); no-op for cgroupfs."""
        ...
