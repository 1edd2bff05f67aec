"""The unit model: what a parsed, validated unit file says.

Frozen dataclasses only; durations are float seconds, sizes are int bytes,
signals are ints. Two units compare equal exactly when their definitions are
the same, which is how the daemon decides whether an edited file "really
changed" (and whether only `[resources]` changed, which is applied live).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from supervisor.network.ports import PortMapping

RestartPolicy = Literal["no", "on-failure", "on-abnormal", "always"]
Writable = Literal["persistent", "ephemeral", "readonly"]
# "bridge" (the default CNI network, "supd"), "host", "none", or a CNI network's name
Network = str
NETWORK_WORDS: tuple[str, ...] = ("bridge", "host", "none")
Userns = Literal["host", "auto"]
PullPolicy = Literal["missing", "always", "never"]
HealthAction = Literal["restart", "freeze", "stop", "none"]


@dataclass(frozen=True)
class UnitSection:
    description: str = ""
    slice: str | None = None  # "web" -> supd-web.slice; None -> supd.slice
    after: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    enabled: bool = True
    priority: int = 0


@dataclass(frozen=True)
class ExecSpec:
    # () only for an image unit: the image's Cmd (units/imageconfig.py)
    command: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    # None: the image's WorkingDir, else "/"
    working_directory: str | None = None
    user: str | None = None  # a name (looked up in the rootfs) or "uid[:gid]"
    # canonical capability names ("NET_RAW", or "ALL"), see units/capabilities.py
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    # "default", "unconfined", an absolute profile path, or None: "default"
    # for a container, "unconfined" for a plain unit (see Unit.seccomp)
    seccomp: str | None = None
    # None: the image's Entrypoint (none for a unit without an image); () clears it
    entrypoint: tuple[str, ...] | None = None
    # where stdout and stderr go: "file" | "journald"; None: supd.toml's log_driver
    log_driver: str | None = None
    # "simple": the unit is up while its process runs. "oneshot" (systemd's
    # Type=oneshot, Kubernetes' init containers): it is done once its process
    # has exited 0, and that is what units `after` it wait for.
    type: str = "simple"

    @property
    def oneshot(self) -> bool:
        return self.type == "oneshot"

    @property
    def argv(self) -> tuple[str, ...]:
        """What runs, before an image's config fills in what the unit left out."""
        return (*(self.entrypoint or ()), *self.command)


@dataclass(frozen=True)
class TmpfsSpec:
    """A tmpfs mounted in the container (`[rootfs].tmpfs`, docker's --tmpfs)."""

    target: str  # absolute path inside the container
    size: int | None = None  # bytes; None: the kernel's default (half of RAM)
    mode: int = 0o1777
    options: tuple[str, ...] = ("nosuid", "nodev", "noexec")  # mount flags, as words


@dataclass(frozen=True)
class BindSpec:
    source: Path  # absolute, resolved against the unit file's folder
    target: str  # absolute path inside the container
    readonly: bool = False


@dataclass(frozen=True)
class DeviceSpec:
    """A host device node granted to a container (`[rootfs].devices`): the
    node is made at the same path in the container's /dev, and its type and
    numbers are allowed `access` (a subset of "rwm") beyond docker's list.
    Whether it is a device on the host is checked when the unit starts."""

    path: str  # absolute, under /dev/
    access: str = "rwm"


@dataclass(frozen=True)
class RootfsSpec:
    layers: tuple[Path, ...] = ()  # lowest first, absolute
    # canonical image source (rootfs/source.py): "/abs/layout:TAG", "docker://REF", "docker-archive:/x.tar"...
    image: str | None = None
    pull: PullPolicy = "missing"  # when a non-layout image is (re)pulled
    writable: Writable = "persistent"
    hostname: str | None = None
    network: Network = "bridge"
    ports: tuple[PortMapping, ...] = ()  # published through CNI portmap
    binds: tuple[BindSpec, ...] = ()
    tmpfs: tuple[TmpfsSpec, ...] = ()
    init: bool = False
    devices: tuple[DeviceSpec, ...] = ()
    # "auto": a user namespace of its own, ids from /etc/subuid and /etc/subgid (policy/idranges.py)
    userns: Userns = "host"
    # extra /etc/hosts lines, (name, address) sorted by name; addresses canonical
    hosts: tuple[tuple[str, str], ...] = ()
    dns: tuple[str, ...] = ()  # nameservers replacing the host's in /etc/resolv.conf


@dataclass(frozen=True)
class Resources:
    memory_max: int | None = None  # bytes
    memory_high: int | None = None  # bytes
    cpu_weight: int | None = None  # 1..10000 (systemd's CPUWeight)
    cpu_quota: float | None = None  # fraction of one CPU: "50%" -> 0.5, "200%" -> 2.0
    pids_max: int | None = None
    io_weight: int | None = None  # 1..10000 (systemd's IOWeight)
    cpuset: str | None = None  # canonical cpu list, e.g. "0-1,3"

    def is_empty(self) -> bool:
        return self == Resources()


@dataclass(frozen=True)
class RestartSpec:
    policy: RestartPolicy = "no"
    delay: float = 0.1
    max_delay: float = 30.0
    reset_after: float = 60.0
    limit_burst: int = 5
    limit_interval: float = 60.0


@dataclass(frozen=True)
class StopSpec:
    signal: int | None = None  # None: the image's StopSignal, else SIGTERM
    timeout: float = 10.0


@dataclass(frozen=True)
class HealthSpec:
    command: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    on_failure: HealthAction = "none"


@dataclass(frozen=True)
class FreezeSpec:
    near_memory_max: float | None = None  # fraction of memory_max, in (0, 1]
    on_host_pressure: tuple[tuple[str, float], ...] = ()  # (("memory", 40.0),) PSI some avg10, in (0, 100]
    max_frozen: float | None = None  # seconds


@dataclass(frozen=True)
class Unit:
    name: str
    file: Path
    exec: ExecSpec
    unit: UnitSection = field(default_factory=UnitSection)
    rootfs: RootfsSpec | None = None
    resources: Resources = field(default_factory=Resources)
    restart: RestartSpec = field(default_factory=RestartSpec)
    stop: StopSpec = field(default_factory=StopSpec)
    health: HealthSpec | None = None
    freeze: FreezeSpec | None = None

    @property
    def slice_name(self) -> str:
        """The systemd slice unit name: supd.slice or supd-<slice>.slice."""
        return "supd.slice" if self.unit.slice is None else f"supd-{self.unit.slice}.slice"

    @property
    def caps(self) -> frozenset[int] | None:
        """The capability numbers its processes keep; None: left alone."""
        from supervisor.units.capabilities import unit_caps

        return unit_caps(self.rootfs is not None, self.exec.cap_add, self.exec.cap_drop)

    @property
    def seccomp(self) -> str:
        """"default", "unconfined" or a profile path, defaults applied."""
        if self.exec.seccomp is not None:
            return self.exec.seccomp
        return "default" if self.rootfs is not None else "unconfined"

    @property
    def scope_name(self) -> str:
        return f"supd-{self.name}.scope"

    def differs_only_in_resources(self, other: Unit) -> bool:
        """True when `other` is this unit with nothing but `[resources]` changed."""
        from dataclasses import replace

        return self != other and replace(self, resources=other.resources) == other
