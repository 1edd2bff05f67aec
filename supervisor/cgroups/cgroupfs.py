"""The cgroupfs driver: supd makes and manages scopes by writing cgroup files
itself, on unified (v2), hybrid and legacy (v1) hosts.

Layout, the same relative path in every hierarchy used:
    <hierarchy>/<cgroup_root>/supd.slice/[supd-x.slice/]supd-<unit>.scope
On a hybrid host, v1 carries every controller and the cgroup2 mount gets the
same directories too, for cgroup.freeze, cgroup.kill and cgroup.events.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Collection, Mapping
from pathlib import Path

import anyio
import structlog

from supervisor.cgroups import devicebpf, devices, names, ownership, translate, tree
from supervisor.cgroups.driver import UNIFIED, CgroupError, CgroupRef, CgroupStats, ScopeSpec
from supervisor.cgroups.layout import Hierarchy, Layout, LayoutKind
from supervisor.procfs import parse_proc_cgroup
from supervisor.units.model import Resources

log = structlog.get_logger()

DRIVER_NAME = "cgroupfs"
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
SYSTEMD_RUNNING = Path("/run/systemd/system")
CGROUP_PROCS = "cgroup.procs"
CGROUP_CONTROLLERS = "cgroup.controllers"
SUBTREE_CONTROL = "cgroup.subtree_control"
# On v2 a cgroup with controllers enabled for its children may hold no process;
# supd's own processes move here when supd's own cgroup is the root it is given.
OWN_LEAF = "supd-daemon.scope"

# v1 hierarchies a scope is made in (DESIGN "cgroups").
V1_USED = frozenset({"memory", "cpu", "cpuacct", "pids", "blkio", "cpuset", "freezer", "devices", "name=systemd"})
# v2 controllers supd enables for its subtree.
V2_WANTED = ("cpuset", "cpu", "io", "memory", "pids")
# New processes can appear in supd's root while it is being emptied (a fork
# that was under way): evacuate and retry this many times before giving up.
EVACUATE_ATTEMPTS = 5


def default_cgroup_paths(own: Mapping[str, str], under_systemd: bool) -> dict[str, str] | None:
    """Under systemd (Delegate=yes), supd works inside its own service cgroup;
    otherwise at each hierarchy's root (None)."""
    if not under_systemd:
        return None
    marker = own.get("name=systemd") or own.get(UNIFIED) or ""
    if not marker.endswith(".service"):
        return None
    return dict(own)


class CgroupfsDriver:
    name = DRIVER_NAME

    def __init__(self, layout: Layout, cgroup_root: str | None = None, *, own_cgroups: Mapping[str, str] | None = None) -> None:
        """`cgroup_root` is a path inside every hierarchy ("/" or "/supdtest1a2b");
        None picks supd's own delegated cgroup under systemd, else "/"."""
        self.layout = layout
        self.hierarchies: tuple[Hierarchy, ...] = tuple(
            h for h in layout.v1 if h.controllers & V1_USED
        ) + ((layout.unified,) if layout.unified is not None else ())
        if own_cgroups is None:
            try:
                own_cgroups = parse_proc_cgroup(PROC_SELF_CGROUP.read_text())
            except OSError:
                own_cgroups = {}
        per_hierarchy = None if cgroup_root is not None else default_cgroup_paths(own_cgroups, SYSTEMD_RUNNING.exists())
        self.roots: dict[str, Path] = {}
        for h in self.hierarchies:
            if per_hierarchy is not None and h.key in per_hierarchy:
                inside = os.path.relpath(per_hierarchy[h.key], h.mount_root)
            else:
                inside = (cgroup_root or "/").lstrip("/") or "."
            if inside.startswith(".."):
                raise CgroupError(h.mount, cgroup_root, "expected a cgroup root inside the mounted hierarchy")
            self.roots[h.key] = Path(os.path.normpath(h.mount / inside))
        self._own = own_cgroups
        # Roots that supd itself will create (e.g. `--cgroup-root /test1`): removed
        # again at exit when empty. A root that was there before is never touched.
        self._made_roots = {key: root for key, root in self.roots.items() if not root.exists()}
        # Controllers are enabled from here down: the mount root (writable by
        # root, exempt from the no-internal-processes rule), or supd's own
        # delegated cgroup under systemd, above which supd must not write.
        delegated = per_hierarchy is not None and UNIFIED in per_hierarchy
        self._unified_top: Path | None = None
        if UNIFIED in self.roots:
            self._unified_top = self.roots[UNIFIED] if delegated else self._hierarchy(UNIFIED).mount
        self._unified_ready = False
        self._unified_lock = anyio.Lock()
        # v2 levels already delegating every wanted controller they can: a
        # create walks the path each time, and re-reading two files per level
        # per start is the bulk of a scope's cost under emulation.
        self._delegating: set[Path] = set()

    # --- paths

    def _scope_paths(self, spec: ScopeSpec) -> tuple[tuple[str, Path], ...]:
        rel = Path(*names.slice_dirs(spec.slice), spec.scope)
        return tuple(sorted((key, root / rel) for key, root in self.roots.items()))

    def _hierarchy(self, key: str) -> Hierarchy:
        for h in self.hierarchies:
            if h.key == key:
                return h
        raise KeyError(key)

    # --- creating directories

    def _mkdirs(self, key: str, path: Path, created: list[Path]) -> None:
        h = self._hierarchy(key)
        if path.parent.is_dir():  # the usual case: its slice is there, the scope is new
            missing = [] if path.is_dir() else [path]
        else:
            missing = [p for p in reversed([path, *path.parents]) if h.mount in p.parents and not p.exists()]
        for level in missing:
            try:
                level.mkdir()
            except FileExistsError:
                continue  # made by someone else meanwhile
            except OSError as e:
                raise CgroupError(level, None, f"cannot create cgroup: {e.strerror}", errno=e.errno) from e
            created.append(level)
            if key != UNIFIED and "cpuset" in h.controllers:
                # A new v1 cpuset refuses tasks until cpus and mems are filled.
                # (v2 needs nothing: an empty cpuset.cpus means "the parent's".)
                for write in translate.v1_cpuset_init():
                    tree.write(level, write.file, tree.read(level.parent, write.file).strip() or "\n")
        if key == UNIFIED and self.layout.kind is LayoutKind.UNIFIED:
            # A child has no memory.max, cpu.max, ... until its parent delegates
            # them: enable along the path from supd's root to the scope.
            root = self.roots[UNIFIED]
            for level in [root, *[p for p in reversed(path.parents) if root in p.parents]]:
                self._enable_v2_controllers(level)

    async def _prepare_unified_root(self) -> None:
        """Once per driver, under a lock: enable controllers from the top supd
        may write (the mount root, or the delegated cgroup it runs in) down to
        its cgroup root, moving supd's own processes out of that root first."""
        if self._unified_ready or self.layout.kind is not LayoutKind.UNIFIED or self._unified_top is None:
            return
        async with self._unified_lock:
            if self._unified_ready:
                return
            root = self.roots[UNIFIED]
            chain = [self._unified_top, *[p for p in reversed(root.parents) if self._unified_top in p.parents]]
            if root != self._unified_top:
                chain.append(root)
            for level in chain:
                if not level.exists():
                    try:
                        level.mkdir()
                    except FileExistsError:
                        pass
                    except OSError as e:
                        raise CgroupError(level, None, f"cannot create cgroup: {e.strerror}", errno=e.errno) from e
                if level == root and root != self._hierarchy(UNIFIED).mount:
                    self._evacuate(root)  # before anything is enabled below it
                self._enable_v2_controllers(level, evacuate=level == root)
            self._unified_ready = True

    def _enable_v2_controllers(self, level: Path, *, evacuate: bool = False) -> None:
        """Delegate V2_WANTED to `level`'s children, one controller per write
        so one the kernel refuses does not take the others with it. EBUSY is v2's
        no-internal-processes rule: for supd's own root its processes move to a
        leaf and the write is tried again; anywhere else it is an error."""
        if self.layout.kind is not LayoutKind.UNIFIED:
            return  # hybrid: the cgroup2 side only carries freeze/kill/events
        if level in self._delegating:
            return
        available = tree.read(level, CGROUP_CONTROLLERS).split()
        enabled = set(tree.read(level, SUBTREE_CONTROL).split())
        refused = False
        for controller in (c for c in V2_WANTED if c in available and c not in enabled):
            for attempt in range(EVACUATE_ATTEMPTS):
                try:
                    tree.write(level, SUBTREE_CONTROL, "+" + controller)
                    break
                except CgroupError as e:
                    if e.errno != errno.EBUSY or not evacuate or attempt == EVACUATE_ATTEMPTS - 1:
                        if e.errno == errno.EBUSY:
                            raise CgroupError(
                                level / SUBTREE_CONTROL,
                                "+" + controller,
                                "holds processes, so cgroup v2 cannot delegate controllers below it "
                                "(no internal processes); give supd an empty cgroup_root or its own delegated cgroup",
                                errno=e.errno,
                            ) from e
                        # Not fatal: limits of this controller turn into warnings at create.
                        log.warning("cgroup_controller_not_enabled", cgroup=str(level), controller=controller, error=str(e))
                        refused = True  # not cached: tried again at the next create
                        break
                    self._evacuate(level)
        if not refused and self._kept_while_running(level):
            self._delegating.add(level)

    def _kept_while_running(self, level: Path) -> bool:
        """supd's root, what is above it, and supd.slice stay while supd runs;
        unit slices go when their last scope does, and come back empty."""
        root = self.roots[UNIFIED]
        return level == root or level == root / names.ROOT_SLICE or level in root.parents

    def _evacuate(self, root: Path) -> None:
        """No internal processes on v2: move whatever sits in the root supd
        was handed (supd itself and its spawner, under systemd) into a leaf."""
        pids = tree.procs(root)
        if not pids:
            return
        leaf = root / OWN_LEAF
        leaf.mkdir(exist_ok=True)
        for pid in pids:
            try:
                tree.write(leaf, CGROUP_PROCS, str(pid))
            except CgroupError:
                if Path(f"/proc/{pid}").exists():
                    raise
        log.info("cgroup_root_evacuated", root=str(root), leaf=str(leaf), pids=pids)

    # --- limits

    def _apply(self, ref: CgroupRef, resources: Resources, *, clear_unset: bool) -> list[str]:
        warnings: dict[str, str] = {}
        if self.layout.kind is LayoutKind.UNIFIED:
            unified = ref.path(UNIFIED)
            available = set(tree.read(unified, CGROUP_CONTROLLERS).split()) if unified else set()
            for w in translate.v2_files(resources, clear_unset=clear_unset):
                if unified is None or w.controller not in available:
                    self._warn(warnings, ref, resources, w, f'controller "{w.controller}" not available')
                    continue
                self._write(unified, w)
            return list(warnings.values())
        for w in translate.v1_files(resources, clear_unset=clear_unset):
            directory = ref.hierarchy_for(w.controller)
            if directory is None:
                self._warn(warnings, ref, resources, w, f'controller "{w.controller}" not available')
                continue
            file = next(
                (f for f in (w.file, *translate.V1_FILE_ALTERNATIVES.get(w.file, ())) if (directory / f).exists()),
                None,
            )
            if file is None:
                self._warn(warnings, ref, resources, w, f'file "{w.file}" not available')
                continue
            self._write(directory, translate.FileWrite(w.controller, file, w.value, w.key))
        return list(warnings.values())

    @staticmethod
    def _apply_devices(ref: CgroupRef, policy: devices.DevicePolicy) -> None:
        """v1 (legacy, and hybrid hosts): deny all, then each allow, in the
        devices hierarchy. Pure v2: a device program attached to the scope.
        No way to enforce them is an error: a container never runs without."""
        directory = ref.hierarchy_for("devices")
        if directory is not None:
            for file, line in devices.v1_writes(policy):
                tree.write(directory, file, line)
            return
        unified = ref.path(UNIFIED)
        if unified is None:
            raise CgroupError(
                ref.paths[0][1] if ref.paths else ref.scope, None,
                f"unit {ref.unit}: no v1 devices hierarchy and no cgroup2 one: the container's device rules cannot be enforced",
            )  # fmt: skip
        try:
            devicebpf.attach(unified, policy)
        except (devicebpf.DeviceProgramError, ValueError) as e:
            raise CgroupError(unified, None, str(e), errno=getattr(e, "errno", None)) from e

    @staticmethod
    def _write(directory: Path, w: translate.FileWrite) -> None:
        value = w.value
        if isinstance(value, translate.CopyFromParent):
            value = tree.read(directory.parent, value.source or w.file).strip()
        tree.write(directory, w.file, value if value else "\n")

    @staticmethod
    def _warn(warnings: dict[str, str], ref: CgroupRef, resources: Resources, w: translate.FileWrite, why: str) -> None:
        attribute = w.key.rsplit(".", 1)[-1]
        if getattr(resources, attribute, None) is None:
            return  # clearing a limit that cannot exist here is not worth a warning
        warnings.setdefault(w.key, f"{ref.unit}: {w.key}: {why}; limit not applied")

    # --- the protocol

    async def create(self, spec: ScopeSpec, pid: int) -> tuple[CgroupRef, list[str]]:
        paths = self._scope_paths(spec)
        ref = CgroupRef(unit=spec.unit, scope=spec.scope, slice=spec.slice, paths=paths, driver=DRIVER_NAME)
        occupied = self.find(spec)
        if occupied is not None and (strangers := tree.pids_in(occupied)):
            # Joining would make them the unit's (listed, and killed at its stop).
            raise CgroupError(
                occupied.paths[0][1], None,
                f"unit {spec.unit}: the scope already holds processes supd did not start (pids {strangers}); "
                "supd does not join a non-empty scope (as runc refuses a non-empty cgroup)",
            )  # fmt: skip
        created: list[Path] = []
        try:
            await self._prepare_unified_root()
            for key, path in paths:
                self._mkdirs(key, path, created)
            warnings = self._apply(ref, spec.resources, clear_unset=False)
            if spec.devices is not None:
                self._apply_devices(ref, spec.devices)  # before any process is inside
            for _key, path in paths:
                tree.write(path, CGROUP_PROCS, str(pid))
        except BaseException:
            for level in reversed(created):
                try:
                    level.rmdir()
                except OSError:
                    pass
            raise
        for w in warnings:
            log.warning("cgroup_limit_not_applied", unit=spec.unit, warning=w)
        log.info("cgroup_created", unit=spec.unit, scope=spec.scope, pid=pid, driver=DRIVER_NAME)
        return ref, warnings

    async def update(self, ref: CgroupRef, resources: Resources) -> list[str]:
        warnings = self._apply(ref, resources, clear_unset=True)
        log.info("cgroup_updated", unit=ref.unit, scope=ref.scope)
        return warnings

    async def freeze(self, ref: CgroupRef) -> None:
        await tree.freeze(ref)

    async def thaw(self, ref: CgroupRef) -> None:
        await tree.thaw(ref)

    async def kill(self, ref: CgroupRef, sig: int) -> None:
        await tree.kill_all(ref, sig)

    async def remove(self, ref: CgroupRef) -> None:
        tree.forget(ref)
        if tree.pids_in(ref):
            await tree.kill_all(ref, signal.SIGKILL)
        for _key, path in ref.paths:
            await tree.rmdir_tree(path)
        self._remove_empty_unit_slices(ref)
        log.info("cgroup_removed", unit=ref.unit, scope=ref.scope)

    def _remove_empty_unit_slices(self, ref: CgroupRef) -> None:
        roots = set(self.roots.values())
        for _key, path in ref.paths:
            level = path.parent
            while level.name.endswith(names.SLICE_SUFFIX) and level.name != names.ROOT_SLICE and level not in roots:
                try:
                    level.rmdir()
                except OSError:
                    break  # still used by another unit
                level = level.parent

    def stats(self, ref: CgroupRef) -> CgroupStats:
        return tree.stats(ref)

    def pids(self, ref: CgroupRef) -> list[int]:
        return tree.pids_in(ref)

    def find(self, spec: ScopeSpec) -> CgroupRef | None:
        existing = tuple((k, p) for k, p in self._scope_paths(spec) if p.is_dir())
        if not existing:
            return None
        return CgroupRef(unit=spec.unit, scope=spec.scope, slice=spec.slice, paths=existing, driver=DRIVER_NAME)

    # --- ownership (see ownership.py)

    def lock_directory(self) -> Path | None:
        """The root directory the one-supd-per-root lock is taken on; made if
        missing (and then removed at exit when empty, like any root supd made)."""
        directory = ownership.lock_directory(self.roots)
        if directory is not None:
            # A bare directory is enough to lock (never a v1 cpuset one, see
            # ownership.lock_directory); controllers are set up when a scope is made.
            directory.mkdir(parents=True, exist_ok=True)
        return directory

    def scope_path_problem(self, unit: str, ref: CgroupRef) -> str | None:
        """Why a recorded ref is not a scope of `unit` inside supd's slices (None: it is)."""
        for key, path in ref.paths:
            problem = ownership.scope_path_problem(unit, key, path, self.roots)
            if problem is not None:
                return problem
        return None

    def _scopes_under_supd(self) -> dict[Path, list[tuple[str, Path]]]:
        """relative scope path -> [(hierarchy key, absolute path)], only
        supd-*.scope directories inside supd.slice and its supd-*.slice children."""
        found: dict[Path, list[tuple[str, Path]]] = {}
        for key, root in self.roots.items():
            stack = [root / names.ROOT_SLICE]
            while stack:
                directory = stack.pop()
                try:
                    with os.scandir(directory) as entries:
                        children = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
                except FileNotFoundError:
                    continue
                for child in children:
                    if child.name.startswith(names.SCOPE_PREFIX) and child.name.endswith(names.SLICE_SUFFIX):
                        stack.append(child)
                    elif names.unit_of_scope(child.name) is not None:
                        found.setdefault(child.relative_to(root), []).append((key, child))
        return found

    async def remove_stale(self, keep: Collection[str], owned: Collection[CgroupRef] = ()) -> list[str]:
        """Remove scopes of units not in `keep`, but only those this supd's own
        records name (`owned`) or that hold no process: processes nobody here
        recorded belong to someone else (a supd before this one with another
        state folder, a human) and are left alone, with a warning."""
        owned_paths = {path for ref in owned for _key, path in ref.paths}
        removed: list[str] = []
        for rel, paths in sorted(self._scopes_under_supd().items()):
            unit = names.unit_of_scope(rel.name)
            if unit is None or unit in keep:
                continue
            ref = CgroupRef(
                unit=unit, scope=rel.name, slice=rel.parent.name, paths=tuple(sorted(paths)), driver=DRIVER_NAME
            )
            try:
                if not owned_paths.intersection(path for _key, path in paths):
                    pids = tree.pids_in(ref)
                    if pids:
                        log.warning("cgroup_stale_not_ours", unit=unit, scope=rel.name, pids=pids)
                        continue
                await self.remove(ref)
            except (CgroupError, OSError) as e:
                # e.g. removed meanwhile by someone else: not worth stopping supd for
                log.warning("cgroup_stale_remove_failed", unit=unit, scope=rel.name, error=str(e))
                continue
            removed.append(rel.name)
            log.info("cgroup_stale_removed", unit=unit, scope=rel.name)
        return removed

    def describe(self) -> str:
        return f"{DRIVER_NAME}, {self.layout.describe()}"

    async def aclose(self) -> None:
        """Leave no empty supd.slice behind when supd exits. A slice that still
        holds scopes (units kept running by live-restore) refuses rmdir: kept."""
        self._delegating.clear()
        for root in self.roots.values():
            top = root / names.ROOT_SLICE
            if not top.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                if Path(dirpath).name.endswith(names.SLICE_SUFFIX):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass  # not empty: a unit still runs there
        for root in self._made_roots.values():
            try:
                root.rmdir()
            except OSError:
                pass  # not empty, or already gone
