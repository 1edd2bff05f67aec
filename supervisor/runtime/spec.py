"""What the spawner needs to start one process, as plain JSON.

Pure: no I/O. The daemon builds a `SpawnSpec`, `to_json()` turns it into a
dict the stdlib-only shim (runtime/shim.py) reads with plain key access, and
`SpawnSpec.from_json()` reads it back (round-trip, used by tests and by
anything that stores a spec).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# "none": a network namespace of its own with only lo; "private": the same,
# which the daemon then connects (CNI ADD) before its go
Network = Literal["host", "none", "private"]

NETWORKS: tuple[str, ...] = ("host", "none", "private")


class SpecError(ValueError):
    """A spawn spec (or its JSON form) is not what the shim can run."""

    def __init__(self, key: str, expected: str, got: object) -> None:
        self.key = key
        self.expected = expected
        self.got = got
        super().__init__(f"spawn spec {key}: expected {expected}, got {got!r}")


@dataclass(frozen=True)
class RootfsMount:
    """How the container's pid 1 builds its root (same fields as
    `rootfs.overlay.RootfsPlan`, whose dict form `from_json` accepts).

    `lowerdirs` are LOWEST FIRST (the order of `[rootfs].layers`); the shim
    reverses them for overlay's `lowerdir=top:...:bottom` option. When `chdir`
    is set the shim changes into it before mounting, so `lowerdirs` may be
    short names relative to it (100+ layers under the page-size option limit).
    One lower and no upper is bind-mounted instead of overlaid.
    """

    lowerdirs: tuple[str, ...]
    target: str
    upperdir: str | None = None
    workdir: str | None = None
    readonly: bool = False
    chdir: str | None = None

    def __post_init__(self) -> None:
        if not self.lowerdirs:
            raise SpecError("rootfs.lowerdirs", "at least one layer", list(self.lowerdirs))
        if not self.target.startswith("/"):
            raise SpecError("rootfs.target", "an absolute path", self.target)
        if (self.upperdir is None) != (self.workdir is None):
            raise SpecError("rootfs.workdir", "upperdir and workdir both set or both unset",
                            (self.upperdir, self.workdir))

    @classmethod
    def of(cls, plan: Any) -> RootfsMount:
        """From any object with the RootfsPlan attributes (or a mapping)."""
        if isinstance(plan, Mapping):
            return cls.from_json(plan)
        return cls(
            lowerdirs=tuple(str(p) for p in plan.lowerdirs),
            target=str(plan.target),
            upperdir=None if plan.upperdir is None else str(plan.upperdir),
            workdir=None if plan.workdir is None else str(plan.workdir),
            readonly=bool(plan.readonly),
            chdir=None if plan.chdir is None else str(plan.chdir),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "lowerdirs": list(self.lowerdirs),
            "upperdir": self.upperdir,
            "workdir": self.workdir,
            "target": self.target,
            "readonly": self.readonly,
            "chdir": self.chdir,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RootfsMount:
        return cls(
            lowerdirs=tuple(str(p) for p in data["lowerdirs"]),
            target=str(data["target"]),
            upperdir=_opt_str(data.get("upperdir")),
            workdir=_opt_str(data.get("workdir")),
            readonly=bool(data.get("readonly", False)),
            chdir=_opt_str(data.get("chdir")),
        )


@dataclass(frozen=True)
class Bind:
    source: str  # host path
    target: str  # absolute path inside the container
    readonly: bool = False


@dataclass(frozen=True)
class Tmpfs:
    target: str  # absolute path inside the container
    data: str  # tmpfs mount options: "mode=1777,size=67108864"
    flags: tuple[str, ...] = ("nosuid", "nodev", "noexec")  # of TMPFS_FLAGS

    def __post_init__(self) -> None:
        if not self.target.startswith("/"):
            raise SpecError("container.tmpfs.target", "an absolute path", self.target)
        for flag in self.flags:
            if flag not in TMPFS_FLAGS:
                raise SpecError("container.tmpfs.flags", " or ".join(TMPFS_FLAGS), flag)


TMPFS_FLAGS = ("nosuid", "nodev", "noexec", "ro")


@dataclass(frozen=True)
class DeviceNode:
    """A device node the container's /dev gets beyond the standard ones
    (`[rootfs].devices`), as found on the host."""

    path: str  # absolute, under /dev/
    kind: str  # "c" | "b"
    major: int
    minor: int
    mode: int  # permission bits
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("c", "b"):
            raise SpecError("container.devices.kind", '"c" or "b"', self.kind)
        if not self.path.startswith("/dev/") or ".." in self.path.split("/"):
            raise SpecError("container.devices.path", "an absolute path under /dev/ without ..", self.path)

    def to_json(self) -> list[Any]:
        return [self.path, self.kind, self.major, self.minor, self.mode, self.uid, self.gid]

    @classmethod
    def from_json(cls, data: Any) -> DeviceNode:
        path, kind, major, minor, mode, uid, gid = data
        return cls(str(path), str(kind), int(major), int(minor), int(mode), int(uid), int(gid))


@dataclass(frozen=True)
class UserNamespace:
    """Container ids 0..count-1 are host uids uid.. and gids gid.. (the shim
    writes the maps from outside and mounts the layers id-mapped)."""

    uid: int
    gid: int
    count: int = 65536

    def __post_init__(self) -> None:
        for key in ("uid", "gid", "count"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                # uid/gid 0 would map container root to host root: never a userns worth having
                raise SpecError(f"container.userns.{key}", "a positive integer", value)

    def to_json(self) -> dict[str, int]:
        return {"uid": self.uid, "gid": self.gid, "count": self.count}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UserNamespace:
        return cls(uid=data["uid"], gid=data["gid"], count=data.get("count", 65536))


@dataclass(frozen=True)
class ContainerSpec:
    """New mount, pid, uts, ipc (and net unless network="host") namespaces,
    and a cgroup namespace entered after the daemon's go."""

    rootfs: RootfsMount
    hostname: str | None = None
    network: Network = "host"
    binds: tuple[Bind, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    init: str | None = None  # host path of an init binary, run as pid 1 from /dev/init
    devices: tuple[DeviceNode, ...] = ()
    # written under /proc/sys by pid 1 before its root changes; only for
    # namespaced ones (net.* with a network namespace of its own)
    sysctls: tuple[tuple[str, str], ...] = ()
    userns: UserNamespace | None = None  # None: the host's user namespace
    # (container path, host file) bound over the path: /etc/hosts, resolv.conf, hostname
    etc_files: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise SpecError("container.network", " or ".join(NETWORKS), self.network)
        for name, _value in self.sysctls:
            if not name or "/" in name or ".." in name.split("."):
                raise SpecError("container.sysctls", "names like net.ipv4.ping_group_range", name)
        for bind in self.binds:
            if not bind.target.startswith("/"):
                raise SpecError("container.binds.target", "an absolute path", bind.target)
        for target, source in self.etc_files:
            if not target.startswith("/") or not source.startswith("/"):
                raise SpecError("container.etc_files", "absolute paths", (target, source))

    def to_json(self) -> dict[str, Any]:
        return {
            "rootfs": self.rootfs.to_json(),
            "hostname": self.hostname,
            "network": self.network,
            "binds": [[b.source, b.target, b.readonly] for b in self.binds],
            "tmpfs": [[t.target, t.data, list(t.flags)] for t in self.tmpfs],
            "init": self.init,
            "devices": [d.to_json() for d in self.devices],
            "sysctls": [[k, v] for k, v in self.sysctls],
            "userns": None if self.userns is None else self.userns.to_json(),
            "etc_files": [[t, s] for t, s in self.etc_files],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerSpec:
        return cls(
            rootfs=RootfsMount.from_json(data["rootfs"]),
            hostname=_opt_str(data.get("hostname")),
            network=data.get("network", "host"),
            binds=tuple(Bind(str(s), str(t), bool(ro)) for s, t, ro in data.get("binds", ())),
            tmpfs=tuple(Tmpfs(str(t), str(d), tuple(f)) for t, d, f in data.get("tmpfs", ())),
            init=_opt_str(data.get("init")),
            devices=tuple(DeviceNode.from_json(d) for d in data.get("devices", ())),
            sysctls=tuple((str(k), str(v)) for k, v in data.get("sysctls", ())),
            userns=None if data.get("userns") is None else UserNamespace.from_json(data["userns"]),
            etc_files=tuple((str(t), str(s)) for t, s in data.get("etc_files", ())),
        )


@dataclass(frozen=True)
class JoinSpec:
    """Exec into a running container: enter the namespaces of its pid 1 and
    write the new process into these (host) cgroup.procs files."""

    pid: int
    cgroup_procs: tuple[str, ...] = ()
    # exec -t: the process opens a pty inside (its /dev/ptmx), makes the slave
    # its controlling terminal and stdio, and hands the master to the daemon
    tty: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "cgroup_procs": list(self.cgroup_procs), "tty": self.tty}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JoinSpec:
        return cls(
            pid=int(data["pid"]),
            cgroup_procs=tuple(str(p) for p in data.get("cgroup_procs", ())),
            tty=bool(data.get("tty", False)),
        )


@dataclass(frozen=True)
class SpawnSpec:
    """One process to start. `user` is a name or "uid[:gid]", looked up in the
    host's /etc/passwd for a plain process and in the container's otherwise.
    Containers (and joins) always get no_new_privs.

    `caps`: the capability numbers the process keeps (bounding, effective,
    permitted, inheritable); None leaves them as they are (a plain unit that
    sets no cap_add/cap_drop). `seccomp`: a classic BPF program (struct
    sock_filter[], host byte order) installed after no_new_privs, just before
    exec; None for none."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    user: str | None = None
    container: ContainerSpec | None = None
    join: JoinSpec | None = None
    no_new_privs: bool = False
    umask: int | None = None
    setsid: bool = True
    caps: tuple[int, ...] | None = None
    seccomp: bytes | None = None

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise SpecError("argv", "a non-empty command", list(self.argv))
        if self.container is not None and self.join is not None:
            raise SpecError("join", "either container or join, not both", self.join)
        for key, _value in self.env:
            if not key or "=" in key:
                raise SpecError("env", "names without '='", key)
        if self.caps is not None and not all(0 <= c < 64 for c in self.caps):
            raise SpecError("caps", "capability numbers in 0..63", list(self.caps))
        if self.seccomp is not None and (not self.seccomp or len(self.seccomp) % 8):
            raise SpecError("seccomp", "a BPF program (a multiple of 8 bytes)", len(self.seccomp))

    def to_json(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv),
            "env": [[k, v] for k, v in self.env],
            "cwd": self.cwd,
            "user": self.user,
            "container": None if self.container is None else self.container.to_json(),
            "join": None if self.join is None else self.join.to_json(),
            "no_new_privs": self.no_new_privs,
            "umask": self.umask,
            "setsid": self.setsid,
            "caps": None if self.caps is None else list(self.caps),
            "seccomp": None if self.seccomp is None else base64.b64encode(self.seccomp).decode(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpawnSpec:
        container = data.get("container")
        join = data.get("join")
        umask = data.get("umask")
        return cls(
            argv=tuple(str(a) for a in data["argv"]),
            env=tuple((str(k), str(v)) for k, v in data.get("env", ())),
            cwd=str(data.get("cwd", "/")),
            user=_opt_str(data.get("user")),
            container=None if container is None else ContainerSpec.from_json(container),
            join=None if join is None else JoinSpec.from_json(join),
            no_new_privs=bool(data.get("no_new_privs", False)),
            umask=None if umask is None else int(umask),
            setsid=bool(data.get("setsid", True)),
            caps=None if data.get("caps") is None else tuple(int(c) for c in data["caps"]),
            seccomp=_opt_bytes(data.get("seccomp")),
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise SpecError("seccomp", "base64", value) from None
