"""`[rootfs].tmpfs` entries (docker's `--tmpfs PATH[:OPTIONS]`), and the
scratch tmpfs a read-only root gets. Pure.

Options are comma-separated: `size=64M`, `mode=1777` (octal), and the flag
words `rw`/`ro`, `suid`/`nosuid`, `dev`/`nodev`, `exec`/`noexec`. Unless told
otherwise a tmpfs is `nosuid,nodev,noexec`, as podman's `--tmpfs` is.
"""

from __future__ import annotations

from typing import Final

from supervisor.units import values
from supervisor.units.model import BindSpec, RootfsSpec, TmpfsSpec
from supervisor.units.paths import CONTAINER_PATH_EXPECTED, container_path

TMPFS_EXPECTED: Final = (
    'a tmpfs like "/tmp" or "/tmp:size=64M,mode=1777" (options: size=, mode=, rw, ro, '
    "suid, nosuid, dev, nodev, exec, noexec)"
)
MOUNT_FLAG_WORDS: Final = ("nosuid", "nodev", "noexec", "ro")
# a word and the word that undoes it; the first of each pair is the secure one
_FLAG_PAIRS: Final = (("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"), ("rw", "ro"))
_FLAG_OF: Final = {word: pair for pair in _FLAG_PAIRS for word in pair}
# Where a read-only root gets scratch space, as with podman --read-only
# (--read-only-tmpfs defaults to true there): nosuid,nodev but exec.
READONLY_SCRATCH: Final = (
    TmpfsSpec("/run", mode=0o755, options=("nosuid", "nodev")),
    TmpfsSpec("/tmp", mode=0o1777, options=("nosuid", "nodev")),
    TmpfsSpec("/var/tmp", mode=0o1777, options=("nosuid", "nodev")),
)


def parse_tmpfs(value: object) -> TmpfsSpec:
    """ "/tmp" or "/tmp:size=64M,mode=1777,exec" → TmpfsSpec; ValueError(expected)."""
    if not isinstance(value, str):
        raise ValueError(TMPFS_EXPECTED)
    path, _colon, options = value.partition(":")
    try:
        target = container_path(path)
    except ValueError:
        raise ValueError(f"{TMPFS_EXPECTED}; the path: {CONTAINER_PATH_EXPECTED}") from None
    if target == "/":
        raise ValueError(f"{TMPFS_EXPECTED}; not on / itself")
    size: int | None = None
    mode = 0o1777
    flags = {pair: pair[0] for pair in _FLAG_PAIRS}
    flags[("rw", "ro")] = "rw"
    for option in filter(None, options.split(",")):
        name, eq, arg = option.partition("=")
        if name == "size" and eq:
            try:
                size = values.parse_size(arg)
            except ValueError:
                raise ValueError(f"{TMPFS_EXPECTED}; size: {values.SIZE_EXPECTED}") from None
            if size <= 0:
                raise ValueError(f"{TMPFS_EXPECTED}; size above 0")
        elif name == "mode" and eq:
            try:
                mode = int(arg, 8)
            except ValueError:
                raise ValueError(f"{TMPFS_EXPECTED}; mode: octal like 1777") from None
            if not 0 <= mode <= 0o7777:
                raise ValueError(f"{TMPFS_EXPECTED}; mode: octal up to 7777")
        elif not eq and option in _FLAG_OF:
            flags[_FLAG_OF[option]] = option
        else:
            raise ValueError(f"{TMPFS_EXPECTED}; unknown option {option!r}")
    # only the words that are mount flags; their opposites are the kernel's default
    words = tuple(w for w in flags.values() if w in MOUNT_FLAG_WORDS)
    return TmpfsSpec(target=target, size=size, mode=mode, options=words)


def _covers(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def effective_tmpfs(rootfs: RootfsSpec) -> tuple[TmpfsSpec, ...]:
    """The tmpfs mounts a container gets: its own list, and for a read-only
    root the scratch ones its tmpfs list and binds do not already cover."""
    mounts = list(rootfs.tmpfs)
    if rootfs.writable == "readonly":
        taken = [t.target for t in rootfs.tmpfs] + [b.target for b in rootfs.binds]
        for scratch in READONLY_SCRATCH:
            if not any(_covers(target, scratch.target) for target in taken):
                mounts.append(scratch)
    return tuple(mounts)


def overlaps_bind(spec: TmpfsSpec, binds: tuple[BindSpec, ...]) -> bool:
    return any(b.target == spec.target for b in binds)
