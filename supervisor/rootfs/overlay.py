"""A unit's root filesystem: the overlay mount plan and its on-disk lifecycle.

The plan (`RootfsPlan`) is what the container's pid 1 (runtime/shim.py) gets,
as JSON. It mounts it inside its own mount namespace, so the overlay goes away
with the container and the host never holds it. What the shim does with it:

    if plan["chdir"]: chdir(plan["chdir"])   # lowerdirs are relative to it
    mount("overlay", plan["target"], "overlay", 0,
          "lowerdir=" + ":".join(reversed(plan["lowerdirs"]))
          + (",upperdir=%s,workdir=%s" % (upperdir, workdir) if upperdir else ""))
    ... mount /proc, /sys, /dev, binds (creating their mount points) ...
    if plan["readonly"]: remount "/" with MS_RDONLY   # after pivot_root

`lowerdirs` in the plan are LOWEST first, the order of `[rootfs].layers` (and
of runtime.spec.RootfsMount); overlay's option lists the TOP layer first, so
the option string (`mount_data()`) reverses them. Every plan has an upperdir:
a `readonly` unit gets a scratch one, wiped at each start like an ephemeral
upper, because pid 1 must still create mount points (a bind target, /proc or
/dev an image lacks) before it remounts the root read-only, as runc and
docker `--read-only` do.

When the option string would not fit in a page (the kernel copies at most
PAGE_SIZE bytes of mount data, NUL included), or a layer path holds a
character overlay's option syntax can't carry (`,` `:` `\\`), every layer is
given by a short symlink `state_dir/layers/l/<id>` (docker overlay2's `l/`
idea) and the plan says `chdir` = that directory, lowerdirs = the ids.

Layout owned here:
    state_dir/units/<name>/{upper,work}   persistent: kept; ephemeral: fresh each start
    state_dir/units/<name>/scratch/{upper,work}   readonly: mount points only, fresh each start
    state_dir/units/<name>/.ephemeral     marks an ephemeral upper, so supd can clean it
                                          at start even when the unit file is gone
    runtime_dir/units/<name>/rootfs       the mount point
"""

from __future__ import annotations

import base64
import ctypes
import errno
import hashlib
import os
import re
import shutil
import stat
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from supervisor import procfs
from supervisor.rootfs.errors import ImageError, RootfsError
from supervisor.rootfs.store import Image, LayerStore
from supervisor.runtime.spec import RootfsMount
from supervisor.units.model import Unit, Writable

__all__ = [
    "RootfsError",
    "RootfsPlan",
    "cleanup",
    "command_in_rootfs",
    "format_mount_data",
    "mount",
    "prepare",
    "remove_leftovers",
    "unmount",
]

log = structlog.get_logger()

PAGE_SIZE = 4096
OVERLAY_FSTYPE = "overlay"
UNITS_DIR = "units"
UPPER_DIR = "upper"
WORK_DIR = "work"
ROOTFS_DIR = "rootfs"
EPHEMERAL_MARKER = ".ephemeral"
SCRATCH_DIR = "scratch"  # a readonly unit's throw-away upper (mount points only)
SHORT_LINKS_DIR = "l"
SHORT_ID_LENGTH = 8
# characters that overlay's option parser treats as syntax
OPTION_SYNTAX_CHARS = frozenset(",:\\")
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
# the unit-name pattern from DESIGN.md; only such dirs are ever removed
UNIT_DIR_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_SYMLINK_HOPS = 40

MS_RDONLY = 1
MNT_DETACH = 2


# --- the plan (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class RootfsPlan:
    lowerdirs: tuple[str, ...]  # LOWEST layer first; relative to `chdir` when it is set
    upperdir: str | None  # prepare() always sets one; None only in hand-made plans
    workdir: str | None
    target: str  # the mount point
    readonly: bool
    chdir: str | None = None

    def mount_data(self) -> str:
        return format_mount_data(overlay_order(self.lowerdirs), self.upperdir, self.workdir)

    # The JSON form is the spawner's (runtime.spec.RootfsMount): one shape, defined once.
    def to_json(self) -> dict[str, Any]:
        return RootfsMount.of(self).to_json()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RootfsPlan:
        m = RootfsMount.from_json(data)
        return cls(m.lowerdirs, m.upperdir, m.workdir, m.target, m.readonly, m.chdir)

    def layer_dirs(self) -> list[Path]:
        """Every layer as an absolute path, top first, upper included."""
        base = Path(self.chdir) if self.chdir else Path("/")
        lowers = [base / d for d in overlay_order(self.lowerdirs)]
        return ([Path(self.upperdir)] if self.upperdir else []) + lowers


def format_mount_data(lowerdirs_top_first: Sequence[str], upperdir: str | None, workdir: str | None) -> str:
    data = "lowerdir=" + ":".join(lowerdirs_top_first)
    if upperdir is not None:
        data += f",upperdir={upperdir},workdir={workdir}"
    return data


def fits_in_page(data: str, page_size: int = PAGE_SIZE) -> bool:
    return len(data.encode()) + 1 <= page_size  # +1: the kernel wants the NUL too


def is_option_safe(path: str) -> bool:
    return not any(c in OPTION_SYNTAX_CHARS for c in path)


def needs_short_names(
    lowerdirs: Sequence[str], upperdir: str | None, workdir: str | None, page_size: int = PAGE_SIZE
) -> bool:
    if not all(is_option_safe(d) for d in lowerdirs):
        return True
    return not fits_in_page(format_mount_data(lowerdirs, upperdir, workdir), page_size)


def short_id(path: str, length: int = SHORT_ID_LENGTH) -> str:
    """A short, stable name for a layer path (lowercase base32 of its sha256)."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()
    return base64.b32encode(digest).decode().lower()[:length]


def overlay_order(layers_lowest_first: Sequence[str | Path]) -> list[str]:
    """Overlay lists the top layer first; units and plans list the lowest first."""
    return [str(p) for p in reversed(layers_lowest_first)]


# --- preparing a unit (shell) -------------------------------------------------------


def unit_state_dir(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / UNITS_DIR / name


def mount_point(runtime_dir: Path, name: str) -> Path:
    return Path(runtime_dir) / UNITS_DIR / name / ROOTFS_DIR


def _check_layer(file: Path, key: str, layer: Path) -> Path:
    if not layer.is_absolute():
        raise RootfsError(file, key, f'layer "{layer}" is not an absolute path')
    try:
        real = Path(os.path.realpath(layer, strict=True))
    except FileNotFoundError:
        raise RootfsError(file, key, f'layer "{layer}" does not exist') from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RootfsError(file, key, f'layer "{layer}" is a symlink loop') from None
        raise RootfsError(file, key, f'layer "{layer}" cannot be resolved: {err.strerror}') from None
    if not real.is_dir():
        raise RootfsError(file, key, f'layer "{layer}" is not a directory')
    return real


def unit_image(unit: Unit, store: LayerStore) -> Image | None:
    """The stored image of the unit's `[rootfs].image` (imported on first use)."""
    assert unit.rootfs is not None
    if unit.rootfs.image is None:
        return None
    try:
        return store.image(unit.rootfs.image)
    except ImageError as err:
        raise RootfsError(unit.file, "[rootfs].image", str(err)) from None


def _layers_lowest_first(unit: Unit, store: LayerStore, image: Image | None) -> list[Path]:
    spec = unit.rootfs
    assert spec is not None
    layers: list[Path] = []
    if spec.image is not None:
        image = image or unit_image(unit, store)
        assert image is not None
        layers.extend(store.layer_path(layer) for layer in image.layers)
    for i, layer in enumerate(spec.layers):
        layers.append(_check_layer(unit.file, f"[rootfs].layers[{i}]", layer))
    if not layers:
        raise RootfsError(unit.file, "[rootfs]", "expected layers or an image")
    return layers


def _check_binds(unit: Unit) -> None:
    assert unit.rootfs is not None
    for i, bind in enumerate(unit.rootfs.binds):
        if not os.path.exists(bind.source):
            raise RootfsError(unit.file, f"[rootfs].binds[{i}].source", f'bind source "{bind.source}" does not exist')


def _writable_dirs(unit: Unit, state_dir: Path) -> tuple[Path, Path]:
    assert unit.rootfs is not None
    writable = unit.rootfs.writable
    base = unit_state_dir(state_dir, unit.name)
    base.mkdir(parents=True, exist_ok=True)
    if writable == "readonly":
        # A scratch upper of its own: switching a persistent unit to readonly
        # must neither wipe nor expose its kept upper.
        scratch = base / SCRATCH_DIR
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        upper, work = scratch / UPPER_DIR, scratch / WORK_DIR
    else:
        upper, work = base / UPPER_DIR, base / WORK_DIR
        marker = base / EPHEMERAL_MARKER
        if writable == "ephemeral":
            marker.touch()  # first, so a crash mid-way still gets cleaned up later
            for d in (upper, work):
                if d.exists():
                    shutil.rmtree(d)
        else:
            marker.unlink(missing_ok=True)
    upper.mkdir(mode=0o755, exist_ok=True)
    work.mkdir(mode=0o700, exist_ok=True)
    return upper, work


def _short_link(links_dir: Path, layer: str) -> str:
    """`links_dir/<id>` → layer, created if missing; a longer id on collision."""
    for length in range(SHORT_ID_LENGTH, 53, 4):
        name = short_id(layer, length)
        link = links_dir / name
        try:
            os.symlink(layer, link)
            return name
        except FileExistsError:
            if os.readlink(link) == layer:
                return name
    raise RootfsError(links_dir, "", f'no free short name for layer "{layer}"')


def prepare(
    unit: Unit, state_dir: Path, runtime_dir: Path, store: LayerStore, image: Image | None = None
) -> RootfsPlan:
    """Check the unit's layers and binds, create its upper/work dirs (wiping an
    ephemeral upper) and mount point, and return the mount plan. `image`: the
    unit's image when the caller has it already (unit_image), else looked up."""
    if unit.rootfs is None:
        raise RootfsError(unit.file, "[rootfs]", "the unit has no [rootfs] section to prepare")
    state_dir, runtime_dir = Path(state_dir), Path(runtime_dir)
    layers = _layers_lowest_first(unit, store, image)
    _check_binds(unit)
    readonly = unit.rootfs.writable == "readonly"
    upper, work = _writable_dirs(unit, state_dir)
    upperdir, workdir = str(upper), str(work)
    for d in (upperdir, workdir):
        if not is_option_safe(d):
            raise RootfsError(unit.file, "", f'state_dir "{state_dir}" holds "," ":" or "\\", which overlay options cannot carry')
    lowerdirs = [str(p) for p in layers]
    chdir: str | None = None
    if needs_short_names(lowerdirs, upperdir, workdir):
        links_dir = state_dir / "layers" / SHORT_LINKS_DIR
        links_dir.mkdir(parents=True, exist_ok=True)
        lowerdirs = [_short_link(links_dir, d) for d in lowerdirs]
        chdir = str(links_dir)
        if not fits_in_page(format_mount_data(lowerdirs, upperdir, workdir)):
            raise RootfsError(unit.file, "[rootfs].layers", f"{len(lowerdirs)} layers do not fit in one overlay mount")
    target = mount_point(runtime_dir, unit.name)
    target.mkdir(parents=True, exist_ok=True)
    plan = RootfsPlan(
        lowerdirs=tuple(lowerdirs),
        upperdir=upperdir,
        workdir=workdir,
        target=str(target),
        readonly=readonly,
        chdir=chdir,
    )
    log.debug("rootfs_prepared", unit=unit.name, layers=len(lowerdirs), writable=unit.rootfs.writable, short=chdir is not None)
    return plan


# --- mounting (what the shim does; used by tools and tests) ----------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_cwd_lock = threading.Lock()


def _check(rc: int, what: str, path: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} {path}: {os.strerror(err)}", path)


def mount(plan: RootfsPlan) -> None:
    """Mount the plan at its target in the caller's mount namespace. The daemon
    never does this (the shim does, in the container's namespace); tools and
    tests do. chdir is process-wide, hence the lock and the way back."""
    flags = MS_RDONLY if plan.readonly else 0
    data = plan.mount_data().encode()
    with _cwd_lock:
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if plan.chdir:
                os.chdir(plan.chdir)
            rc = _libc.mount(OVERLAY_FSTYPE.encode(), plan.target.encode(), OVERLAY_FSTYPE.encode(), flags, data)
            _check(rc, "mount overlay on", plan.target)
        finally:
            os.fchdir(cwd)
            os.close(cwd)


def unmount(target: str | Path, detach: bool = False) -> None:
    rc = _libc.umount2(str(target).encode(), MNT_DETACH if detach else 0)
    _check(rc, "umount", str(target))


def _unmount_all(target: Path) -> None:
    """Lazily unmount whatever is (even stacked) on `target`."""
    for _ in range(16):
        if not procfs.is_mount_point(target):
            return
        unmount(target, detach=True)
        log.warning("rootfs_mount_left_behind", target=str(target))


def _remove_mount_point(runtime_dir: Path, name: str) -> None:
    target = mount_point(runtime_dir, name)
    if target.exists():
        _unmount_all(target)
        target.rmdir()
    try:
        target.parent.rmdir()
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno != errno.ENOTEMPTY:
            raise
        log.warning("rootfs_dir_not_empty", dir=str(target.parent))


def _remove_ephemeral(state_dir: Path, name: str) -> None:
    base = unit_state_dir(state_dir, name)
    for d in (base / UPPER_DIR, base / WORK_DIR):
        if d.exists():
            shutil.rmtree(d)
    (base / EPHEMERAL_MARKER).unlink(missing_ok=True)
    try:
        base.rmdir()
    except (FileNotFoundError, OSError):
        pass  # something else lives there; not ours to delete


def _remove_scratch(state_dir: Path, name: str) -> None:
    base = unit_state_dir(state_dir, name)
    scratch = base / SCRATCH_DIR
    if scratch.exists():
        shutil.rmtree(scratch)
    try:
        base.rmdir()
    except (FileNotFoundError, OSError):
        pass  # a persistent upper from an earlier definition: user data, kept


def cleanup(unit_name: str, writable: Writable, state_dir: Path, runtime_dir: Path) -> None:
    """After a unit stopped: its mount point goes (unmounted first if something
    is still mounted there), an ephemeral upper/work or a readonly unit's scratch
    goes, a persistent upper stays."""
    _remove_mount_point(Path(runtime_dir), unit_name)
    if writable == "ephemeral":
        _remove_ephemeral(Path(state_dir), unit_name)
    elif writable == "readonly":
        _remove_scratch(Path(state_dir), unit_name)


def remove_leftovers(state_dir: Path, runtime_dir: Path, keep: Collection[str]) -> list[str]:
    """At supd's start: mount points and ephemeral dirs of units not in `keep`
    (those it no longer runs). Persistent uppers are user data and stay.
    Returns the unit names it cleaned."""
    cleaned: set[str] = set()
    runtime_units = Path(runtime_dir) / UNITS_DIR
    if runtime_units.is_dir():
        for d in runtime_units.iterdir():
            if d.name not in keep and UNIT_DIR_NAME_RE.match(d.name) and d.is_dir() and not d.is_symlink():
                _remove_mount_point(Path(runtime_dir), d.name)
                cleaned.add(d.name)
    state_units = Path(state_dir) / UNITS_DIR
    if state_units.is_dir():
        for d in state_units.iterdir():
            if d.name in keep or not UNIT_DIR_NAME_RE.match(d.name):
                continue
            if (d / SCRATCH_DIR).is_dir():
                _remove_scratch(Path(state_dir), d.name)
                cleaned.add(d.name)
            if (d / EPHEMERAL_MARKER).is_file():
                _remove_ephemeral(Path(state_dir), d.name)
                cleaned.add(d.name)
    if cleaned:
        log.info("rootfs_leftovers_removed", units=sorted(cleaned))
    return sorted(cleaned)


# --- is the command there? (best effort, before spawning) ----------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _step(dirs: Sequence[Path], name: str) -> tuple[Path, os.stat_result, list[Path]] | None:
    """Look `name` up in a merged directory given by its layer dirs (top first):
    the winning entry, its stat, and (for a directory) the layer dirs that merge
    into it. Whiteouts and opaque directories hide what is below them."""
    for i, d in enumerate(dirs):
        path = d / name
        st = _lstat(path)
        if st is None:
            continue
        if _is_whiteout(st):
            return None
        merged = [path]
        if stat.S_ISDIR(st.st_mode) and not _is_opaque(path):
            for below in dirs[i + 1 :]:
                lower = below / name
                lst = _lstat(lower)
                if lst is None:
                    continue
                if not stat.S_ISDIR(lst.st_mode):
                    break  # a whiteout or a file ends the merge
                merged.append(lower)
                if _is_opaque(lower):
                    break
        return path, st, merged
    return None


def _lookup(layers: Sequence[Path], container_path: str) -> tuple[Path, os.stat_result] | None:
    """Resolve an absolute path in the merged view, following symlinks the way
    the container would see them (absolute targets from its root)."""
    todo = [p for p in container_path.split("/") if p]
    done: list[str] = []
    dirs: list[Path] = list(layers)
    hops = 0
    found: tuple[Path, os.stat_result] | None = None
    while todo:
        name = todo.pop(0)
        if name == ".":
            continue
        if name == "..":
            done = done[:-1]
            todo, done, dirs = done + todo, [], list(layers)  # walk again from the root
            continue
        step = _step(dirs, name)
        if step is None:
            return None
        path, st, merged = step
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return None
            target = os.readlink(path)
            base = [] if target.startswith("/") else done
            todo, done, dirs = base + [p for p in target.split("/") if p] + todo, [], list(layers)
            continue
        if todo and not stat.S_ISDIR(st.st_mode):
            return None
        done.append(name)
        dirs = merged
        found = (path, st)
    return found


def command_in_rootfs(plan: RootfsPlan, argv0: str, env_path: str | None = None) -> bool:
    """Best effort: does argv0 name an executable file in the plan's layers
    (upper first, then the lowers, honouring whiteouts and opaque dirs)? Lets
    the daemon say "command /bin/x not in the rootfs" before spawning."""
    layers = plan.layer_dirs()
    if "/" in argv0:
        candidates = [argv0 if argv0.startswith("/") else "/" + argv0]
    else:
        candidates = [f"{d}/{argv0}" for d in (env_path or DEFAULT_PATH).split(":") if d.startswith("/")]
    for candidate in candidates:
        found = _lookup(layers, candidate)
        if found is not None and stat.S_ISREG(found[1].st_mode) and found[1].st_mode & 0o111:
            return True
    return False
