"""Unit (+ its mounted-rootfs plan) → the SpawnSpec the spawner runs. Pure."""

from __future__ import annotations

import shutil
from typing import Any

from supervisor.runtime.spec import Bind, ContainerSpec, DeviceNode, JoinSpec, RootfsMount, SpawnSpec, Tmpfs, UserNamespace
from supervisor.units.capabilities import CONTAINER_DEFAULT
from supervisor.units.model import TmpfsSpec, Unit
from supervisor.units.tmpfs import effective_tmpfs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian's tini ships a static build: it runs in any rootfs, whatever its libc.
INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/tini", "/sbin/tini")
# Any group may open ICMP echo sockets, so ping works without CAP_NET_RAW
# (podman and docker set the same in a container's own network namespace).
PING_GROUP_RANGE = ("net.ipv4.ping_group_range", "0 2147483647")


def find_init() -> str | None:
    for candidate in INIT_CANDIDATES:
        if shutil.which(candidate):
            return candidate
    return None


def unit_environment(unit: Unit, extra: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    env = {"PATH": DEFAULT_PATH, "SUPD_UNIT": unit.name}
    if unit.rootfs is not None:
        env["container"] = "supd"
    env.update(dict(unit.exec.environment))
    env.update(extra or {})
    return tuple(sorted(env.items()))


def unit_sysctls(unit: Unit) -> tuple[tuple[str, str], ...]:
    """Namespaced sysctls for a container with a network namespace of its own."""
    if unit.rootfs is None or unit.rootfs.network == "host":
        return ()
    return (PING_GROUP_RANGE,)


def spawn_network(unit: Unit) -> str:
    """The shim's view: host, or a namespace of its own ("none" stays empty,
    "private" is connected by the daemon's CNI ADD before the go)."""
    assert unit.rootfs is not None
    if unit.rootfs.network in ("host", "none"):
        return unit.rootfs.network
    return "private"


def tmpfs_mount(spec: TmpfsSpec, owner: tuple[int, int] | None = None) -> Tmpfs:
    """`owner`: the host uid and gid of container root in a user namespace of
    its own; the shim mounts as host root, whose files container root cannot
    write (they show as nobody)."""
    data = f"mode={spec.mode:o}" + (f",size={spec.size}" if spec.size is not None else "")
    if owner is not None:
        data += f",uid={owner[0]},gid={owner[1]}"
    return Tmpfs(spec.target, data, spec.options)


def container_hostname(unit: Unit) -> str:
    """`[rootfs].hostname`, else the unit's name made a valid hostname."""
    assert unit.rootfs is not None
    return unit.rootfs.hostname or unit.name.replace("_", "-").replace(".", "-")


def _sorted(caps: frozenset[int] | None) -> tuple[int, ...] | None:
    return None if caps is None else tuple(sorted(caps))


def build_spawn_spec(
    unit: Unit,
    plan: Any | None,
    init_path: str | None = None,
    devices: tuple[DeviceNode, ...] = (),
    *,
    seccomp: bytes | None = None,
    userns: Any | None = None,
    etc_files: dict[str, str] | None = None,
) -> SpawnSpec:
    """`devices`: the unit's `[rootfs].devices` as found on the host;
    `etc_files`: {container path: host file} from daemon/etcfiles.py;
    `seccomp`: the unit's compiled filter (seccomp/unitfilter.py), or None;
    `userns`: the unit's id block (policy.idranges.IdMapping) when
    [rootfs].userns = "auto"; required then."""
    container = None
    if unit.rootfs is not None:
        if plan is None:
            raise ValueError(f"{unit.file}: [rootfs]: no root filesystem plan was prepared")
        init = None
        if unit.rootfs.init:
            init = init_path or find_init()
            if init is None:
                raise ValueError(f"{unit.file}: [rootfs].init: no tini binary on this host (apt-get install tini)")
        user_namespace = _user_namespace(unit, userns)
        owner = None if user_namespace is None else (user_namespace.uid, user_namespace.gid)
        container = ContainerSpec(
            rootfs=RootfsMount.of(plan),
            hostname=container_hostname(unit),
            network=spawn_network(unit),
            binds=tuple(Bind(str(b.source), b.target, b.readonly) for b in unit.rootfs.binds),
            tmpfs=tuple(tmpfs_mount(t, owner) for t in effective_tmpfs(unit.rootfs)),
            init=init,
            devices=devices,
            sysctls=unit_sysctls(unit),
            userns=user_namespace,
            etc_files=tuple(sorted((etc_files or {}).items())),
        )
    return SpawnSpec(
        argv=unit.exec.argv,
        env=unit_environment(unit),
        cwd=unit.exec.working_directory or "/",
        user=unit.exec.user,
        container=container,
        no_new_privs=container is not None or seccomp is not None,
        caps=_sorted(unit.caps),
        seccomp=seccomp,
    )


def _user_namespace(unit: Unit, ids: Any | None) -> UserNamespace | None:
    assert unit.rootfs is not None
    if unit.rootfs.userns != "auto":
        return None
    if ids is None:
        raise ValueError(f"{unit.file}: [rootfs].userns: no id range was allocated")
    return UserNamespace(uid=ids.uid, gid=ids.gid, count=ids.count)


def build_exec_spec(
    unit: Unit,
    main_pid: int,
    cgroup_procs: tuple[str, ...],
    argv: list[str],
    *,
    user: str | None,
    env: dict[str, str],
    cwd: str | None,
    seccomp: bytes | None = None,
) -> SpawnSpec:
    """A command run inside a running unit (supctl exec, health checks): the
    unit's capability set and seccomp filter. Into a plain unit that leaves
    its capabilities alone, the container default, as before."""
    caps = unit.caps if unit.caps is not None else CONTAINER_DEFAULT
    return SpawnSpec(
        argv=tuple(argv),
        env=unit_environment(unit, env),
        cwd=cwd or unit.exec.working_directory or "/",
        user=user if user is not None else unit.exec.user,
        join=JoinSpec(pid=main_pid, cgroup_procs=cgroup_procs),
        no_new_privs=True,
        caps=_sorted(caps),
        seccomp=seccomp,
    )


# What the spawner's error messages are about, by how they start: lets supd
# point at the unit file key to fix, as unit-file errors do.
_ERROR_KEYS = (
    ('user "', "[exec].user"),
    ('group "', "[exec].user"),
    ("exec ", "[exec].command"),
    ("cwd ", "[exec].working_directory"),
    ("bind ", "[rootfs].binds"),
    ("tmpfs ", "[rootfs].tmpfs"),
    ("mount ", "[rootfs]"),
    ("device ", "[rootfs].devices"),
    ("seccomp", "[exec].seccomp"),
    ("drop capability", "[exec].cap_drop"),
    ("userns ", "[rootfs].userns"),
    ("etc ", "[rootfs]"),
)


def describe_spawn_error(unit: Unit, message: str) -> str:
    """`units/web.toml: [exec].command: exec /bin/x: No such file or directory`."""
    for prefix, key in _ERROR_KEYS:
        if message.startswith(prefix):
            return f"{unit.file}: {key}: {message}"
    return f"{unit.file}: {message}"
