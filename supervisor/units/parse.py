"""Unit files: TOML -> validated `Unit`, or a `UnitFileError` that names the
file, the key path, what was expected and what was found.

`load_unit` is the only function here that does I/O (it reads the one file,
refusing oversized ones before reading them); `parse_unit` is pure.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import math
import os
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar, cast, get_args

from supervisor.network.conflist import NAME_RE as NETWORK_NAME_RE
from supervisor.network.ports import PortMapping, clashes, parse_port
from supervisor.units import capabilities, values
from supervisor.units.model import (
    BindSpec,
    DeviceSpec,
    ExecSpec,
    FreezeSpec,
    HealthAction,
    HealthSpec,
    Resources,
    RestartPolicy,
    RestartSpec,
    RootfsSpec,
    StopSpec,
    TmpfsSpec,
    Unit,
    UnitSection,
    PullPolicy,
    Userns,
    Writable,
)
from supervisor.rootfs.reference import ReferenceError
from supervisor.rootfs.source import SourceError, image_source
from supervisor.units.paths import container_path, resolve_host_path
from supervisor.units.tmpfs import parse_tmpfs

T = TypeVar("T")

MAX_UNIT_FILE_SIZE: Final = 1024 * 1024
UNIT_FILE_SUFFIX: Final = ".toml"
_MAX_RENDERED: Final = 80
_MAX_RENDER_DEPTH: Final = 8
_MAX_INT: Final = 2**31 - 1

SECTIONS: Final = ("unit", "exec", "rootfs", "resources", "restart", "stop", "health", "freeze")
UNIT_KEYS: Final = ("description", "slice", "after", "requires", "enabled", "priority")
EXEC_KEYS: Final = ("command", "environment", "working_directory", "user", "cap_add", "cap_drop", "seccomp", "entrypoint", "log_driver", "type")
SECCOMP_WORDS: Final = ("default", "unconfined")
ROOTFS_KEYS: Final = (
    "layers", "image", "pull", "writable", "hostname", "network", "ports", "binds", "tmpfs", "init", "devices", "userns",
    "hosts", "dns",
)  # fmt: skip
BIND_KEYS: Final = ("source", "target", "readonly")
RESOURCES_KEYS: Final = (
    "memory_max", "memory_high", "cpu_weight", "cpu_quota", "pids_max", "io_weight", "cpuset",
)  # fmt: skip
RESTART_KEYS: Final = ("policy", "delay", "max_delay", "reset_after", "limit_burst", "limit_interval")
STOP_KEYS: Final = ("signal", "timeout")
LOG_DRIVERS: Final = ("file", "journald")
EXEC_TYPES: Final = ("simple", "oneshot")
# a oneshot runs once, to its end: "always" would start it again after a success
ONESHOT_POLICIES: Final = ("no", "on-failure", "on-abnormal")
HEALTH_KEYS: Final = ("command", "interval", "timeout", "retries", "start_period", "on_failure")
FREEZE_KEYS: Final = ("near_memory_max", "on_host_pressure", "max_frozen")
PRESSURE_RESOURCES: Final = ("memory", "cpu", "io")
NO_LIMIT_WORDS: Final = ("infinity", "max")
WEIGHT_RANGE: Final = (1, 10000)  # systemd's CPUWeight= / IOWeight=
DEVICE_EXPECTED: Final = 'a device path under /dev, optionally with access like "/dev/net/tun:rw"'
DEVICE_ACCESS: Final = "rwm"
# What supd itself makes in a container's /dev: a device entry may not
# replace one of these or reach below one.
DEV_RESERVED: Final = frozenset(
    {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
     "fd", "stdin", "stdout", "stderr", "ptmx", "init"}
)  # fmt: skip
HOSTS_EXPECTED: Final = 'a table of hostname = address, like { "db.local" = "10.1.2.3" }'
ADDRESS_EXPECTED: Final = 'an IPv4 or IPv6 address like "10.1.2.3" or "fd00::3"'
# glibc's resolver reads the first three nameserver lines (MAXNS) and ignores the rest
MAX_NAMESERVERS: Final = 3
DNS_EXPECTED: Final = f'a list of at most {MAX_NAMESERVERS} IP addresses, like ["1.1.1.1"]'


class _Missing:
    """What `got` is when a required key is absent."""

    def __repr__(self) -> str:
        return "nothing"


MISSING: Final = _Missing()


class UnitFileError(Exception):
    """A unit file that can't be used, and precisely why.

    `key` is a path like `[restart].delay` or `[rootfs].binds[0].source`, or ""
    for problems with the file as a whole (then `expected` is the whole message).
    """

    def __init__(
        self, file: Path, key: str, expected: str, got: object = MISSING, *, unknown: bool = False
    ) -> None:
        super().__init__(file, key, expected, got)
        self.file = file
        self.key = key
        self.expected = expected
        self.got = got
        self.unknown = unknown  # the key itself is not allowed here

    def __str__(self) -> str:
        if not self.key:
            return f"{self.file}: {self.expected}"
        if self.unknown:
            what = "section" if "." not in self.key and self.key.startswith("[") else "key"
            return f"{self.file}: {self.key}: unknown {what}, expected {self.expected}"
        return f"{self.file}: {self.key}: expected {self.expected}, got {render_value(self.got)}"


def render_value(value: object) -> str:
    """`value` as it would look in TOML, shortened: strings quoted, numbers bare."""
    text = _render(value, 0)
    return text if len(text) <= _MAX_RENDERED else text[: _MAX_RENDERED - 3] + "..."


def _render(value: object, depth: int) -> str:
    if depth > _MAX_RENDER_DEPTH:
        return "..."
    if value is MISSING:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else "a huge integer"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value[:_MAX_RENDERED], ensure_ascii=False)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        items = list(value.items())[:8]
        if not items:
            return "{}"
        inner = ", ".join(f"{_render_key(k)} = {_render(v, depth + 1)}" for k, v in items)
        return "{ " + inner + (", ..." if len(value) > 8 else "") + " }"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_render(v, depth + 1) for v in value[:8])
        return "[" + inner + (", ..." if len(value) > 8 else "") + "]"
    return repr(value)[:_MAX_RENDERED]


def _render_key(key: object) -> str:
    text = str(key)
    if text and all(c.isascii() and (c.isalnum() or c in "_-") for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class _Table:
    """One TOML table of a unit file, with its key path, refusing unknown keys."""

    def __init__(
        self, file: Path, path: str, data: object, allowed: Sequence[str], *, sections: bool = False
    ) -> None:
        self.file = file
        self.path = path
        self.sections = sections  # the document itself: its keys are sections, shown as [name]
        if not isinstance(data, Mapping):
            raise UnitFileError(file, path, "a table", data)
        self.data = cast(Mapping[str, object], data)
        for key in self.data:
            if key not in allowed:
                raise UnitFileError(
                    file, self.key(key), "one of: " + ", ".join(allowed), self.data[key], unknown=True
                )

    def key(self, name: object) -> str:
        if self.sections:
            return f"[{_render_key(name)}]"
        return f"{self.path}.{_render_key(name)}"

    def error(self, name: str, expected: str, got: object = MISSING) -> UnitFileError:
        return UnitFileError(self.file, self.key(name), expected, got)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, parse: Callable[[object], T], default: T) -> T:
        if name not in self.data:
            return default
        return self.require(name, parse)

    def require(self, name: str, parse: Callable[[object], T]) -> T:
        if name not in self.data:
            try:
                parse(MISSING)
            except ValueError as exc:
                raise self.error(name, str(exc)) from None
            raise self.error(name, "a value")  # pragma: no cover - parsers refuse MISSING
        value = self.data[name]
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(name, str(exc), value) from None


# --- value parsers: raw TOML value -> model value, or ValueError(expected) ---


def _string(value: object) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise ValueError("a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _int_in(low: int, high: int, expected: str | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(expected or f"an integer in {low}..{high}")
        return value

    return parse


def _choice(options: Sequence[str]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(f'"{o}"' for o in options))
        return cast(str, value)

    return parse


def _duration(minimum_exclusive: bool = False) -> Callable[[object], float]:
    def parse(value: object) -> float:
        seconds = values.parse_duration(value)
        if minimum_exclusive and seconds <= 0:
            raise ValueError(f"{values.DURATION_EXPECTED} above 0")
        return seconds

    return parse


def _positive_size_or_unlimited(value: object) -> int | None:
    if isinstance(value, str) and value.strip().lower() in NO_LIMIT_WORDS:
        return None
    try:
        size = values.parse_size(value)
    except ValueError:
        raise ValueError(f'{values.SIZE_EXPECTED}, or "infinity"') from None
    if size <= 0:
        raise ValueError(f"{values.SIZE_EXPECTED} above 0")
    return size


def _pids_max(value: object) -> int | None:
    if isinstance(value, str) and value.strip().lower() in NO_LIMIT_WORDS:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**62:
        raise ValueError('an integer of at least 1, or "infinity"')
    return value


ARGV_EXPECTED: Final = "a non-empty list of strings, the program first"
ARG_EXPECTED: Final = "a string without NUL bytes"


def _argv(table: _Table, key: str, *, may_be_empty: bool = False) -> tuple[str, ...] | None:
    """An argument list: strings (empty ones too: `["redis-server", "--save", ""]`),
    the first a non-empty program name. A bad element is named by its index.
    None when the key is absent."""
    if not table.has(key):
        return None
    raw = table.data[key]
    if not isinstance(raw, list) or (not raw and not may_be_empty):
        raise table.error(key, ARGV_EXPECTED + (" (or [] for none)" if may_be_empty else ""), raw)
    for index, arg in enumerate(raw):
        if not isinstance(arg, str) or "\0" in arg:
            raise UnitFileError(table.file, f"{table.key(key)}[{index}]", ARG_EXPECTED, arg)
    if raw and not raw[0]:
        raise UnitFileError(table.file, f"{table.key(key)}[0]", "a program name (a non-empty string)", raw[0])
    return tuple(raw)


def _via(parse: Callable[[object], T], valid: Callable[[object], bool], expected: str) -> Callable[[object], T]:
    def checked(value: object) -> T:
        if not valid(value):
            raise ValueError(expected)
        return parse(value)

    return checked


def _fraction_up_to_one(value: object) -> float:
    expected = "a number in (0, 1] like 0.95"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(expected)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(expected)
    return float(value)


def _pressure_percent(value: object) -> float:
    expected = "a PSI percentage in (0, 100] like 40.0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(expected)
    if not (math.isfinite(value) and 0 < value <= 100):
        raise ValueError(expected)
    return float(value)


# --- sections ---


def parse_unit(name: str, data: Mapping[str, object], file: Path) -> Unit:
    """Validate a parsed TOML document as the unit `name` from `file`."""
    if not values.valid_unit_name(name):
        raise UnitFileError(
            file, "", f"expected the file name to be {values.UNIT_NAME_EXPECTED} plus .toml, got {render_value(name)}"
        )
    if not isinstance(data, Mapping):
        raise UnitFileError(file, "", f"expected a TOML document of tables, got {render_value(data)}")
    top = _Table(file, "", data, SECTIONS, sections=True)
    if not top.has("exec"):
        if not (top.has("rootfs") and isinstance(top.data["rootfs"], Mapping) and "image" in top.data["rootfs"]):
            raise UnitFileError(file, "[exec]", "a table with at least command", MISSING)
    unit_dir = Path(file).parent

    section = _unit_section(name, _Table(file, "[unit]", top.data["unit"], UNIT_KEYS)) if top.has("unit") else UnitSection()
    exec_spec = _exec_section(_Table(file, "[exec]", top.data.get("exec", {}), EXEC_KEYS), unit_dir)
    rootfs = _rootfs_section(_Table(file, "[rootfs]", top.data["rootfs"], ROOTFS_KEYS), unit_dir) if top.has("rootfs") else None
    if not exec_spec.argv and (rootfs is None or rootfs.image is None):
        # only an image can supply the program (its Entrypoint and Cmd)
        raise UnitFileError(file, "[exec].command", ARGV_EXPECTED, MISSING)
    resources = _resources_section(_Table(file, "[resources]", top.data["resources"], RESOURCES_KEYS)) if top.has("resources") else Resources()
    restart = _restart_section(_Table(file, "[restart]", top.data["restart"], RESTART_KEYS)) if top.has("restart") else RestartSpec()
    if exec_spec.oneshot and restart.policy not in ONESHOT_POLICIES:
        expected = " or ".join(f'"{p}"' for p in ONESHOT_POLICIES) + ' ([exec].type = "oneshot" runs once, to its end)'
        raise UnitFileError(file, "[restart].policy", expected, restart.policy)
    stop = _stop_section(_Table(file, "[stop]", top.data["stop"], STOP_KEYS)) if top.has("stop") else StopSpec()
    health = _health_section(_Table(file, "[health]", top.data["health"], HEALTH_KEYS)) if top.has("health") else None
    freeze = _freeze_section(_Table(file, "[freeze]", top.data["freeze"], FREEZE_KEYS), resources) if top.has("freeze") else None
    return Unit(
        name=name, file=Path(file), exec=exec_spec, unit=section, rootfs=rootfs,
        resources=resources, restart=restart, stop=stop, health=health, freeze=freeze,
    )  # fmt: skip


def _unit_names(table: _Table, key: str, own_name: str) -> tuple[str, ...]:
    raw = table.data.get(key, [])
    if not isinstance(raw, list):
        raise table.error(key, "a list of unit names", raw)
    names: list[str] = []
    for index, item in enumerate(raw):
        path = f"{table.key(key)}[{index}]"
        if not values.valid_unit_name(item):
            raise UnitFileError(table.file, path, values.UNIT_NAME_EXPECTED, item)
        if item == own_name:
            raise UnitFileError(table.file, path, "the name of another unit (not this one)", item)
        if item not in names:
            names.append(cast(str, item))
    return tuple(names)


def _unit_section(name: str, table: _Table) -> UnitSection:
    return UnitSection(
        description=table.get("description", _string, ""),
        slice=table.get("slice", _via(_string, values.valid_slice_name, values.SLICE_NAME_EXPECTED), None),
        after=_unit_names(table, "after", name),
        requires=_unit_names(table, "requires", name),
        enabled=table.get("enabled", _bool, True),
        priority=table.get("priority", _int_in(-_MAX_INT, _MAX_INT, "an integer"), 0),
    )


def _environment(table: _Table) -> tuple[tuple[str, str], ...]:
    raw = table.data.get("environment", {})
    if not isinstance(raw, Mapping):
        raise table.error("environment", "a table of NAME = \"value\" strings", raw)
    env = _Table(table.file, table.key("environment"), raw, tuple(raw))
    pairs: list[tuple[str, str]] = []
    for key, value in raw.items():
        if not values.valid_env_name(key):
            raise UnitFileError(table.file, env.key(key), "an environment variable name like TZ or MY_VAR", key)
        pairs.append((key, env.require(key, _string)))
    return tuple(sorted(pairs))


def _cap_names(table: _Table, key: str) -> tuple[str, ...]:
    raw = table.data.get(key, [])
    try:
        return capabilities.parse_names(raw)
    except capabilities.UnknownCapability as exc:
        raise UnitFileError(
            table.file, f"{table.key(key)}[{exc.index}]", capabilities.NAME_EXPECTED, exc.name
        ) from None
    except ValueError as exc:
        raise table.error(key, str(exc), raw) from None


def _seccomp(unit_dir: Path) -> Callable[[object], str]:
    expected = '"default", "unconfined" or the path of a docker/OCI seccomp JSON profile'

    def parse(value: object) -> str:
        if not isinstance(value, str) or not value or "\0" in value:
            raise ValueError(expected)
        if value in SECCOMP_WORDS:
            return value
        try:
            return str(resolve_host_path(value, unit_dir))
        except ValueError:
            raise ValueError(expected) from None

    return parse


def _exec_section(table: _Table, unit_dir: Path) -> ExecSpec:
    spec = ExecSpec(
        command=_argv(table, "command") or (),
        entrypoint=_argv(table, "entrypoint", may_be_empty=True),
        environment=_environment(table),
        working_directory=table.get("working_directory", container_path, None),
        user=table.get("user", _via(_string, values.valid_user, values.USER_EXPECTED), None),
        cap_add=_cap_names(table, "cap_add"),
        cap_drop=_cap_names(table, "cap_drop"),
        seccomp=table.get("seccomp", _seccomp(unit_dir), None),
        log_driver=table.get("log_driver", _choice(LOG_DRIVERS), None),
        type=table.get("type", _choice(EXEC_TYPES), "simple"),
    )
    both = capabilities.conflict(spec.cap_add, spec.cap_drop)
    if both is not None:
        raise table.error("cap_drop", f"no capability also in cap_add ({both} is in both)", table.data["cap_drop"])
    return spec


def _image_ref(unit_dir: Path) -> Callable[[object], str]:
    """A registry reference, an OCI layout "DIR:TAG" or a transport-prefixed
    source (rootfs/source.py), as one canonical string."""
    expected = 'an image: a registry reference like "busybox:1.36" or an OCI layout and tag like "images/alpine:3.20"'

    def parse(value: object) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(expected)
        try:
            return image_source(value, unit_dir)
        except (SourceError, ReferenceError) as exc:
            raise ValueError(f"{expected} ({exc})") from None

    return parse


def _layers(table: _Table, unit_dir: Path) -> tuple[Path, ...]:
    raw = table.data.get("layers", [])
    if not isinstance(raw, list):
        raise table.error("layers", "a list of layer directories, lowest first", raw)
    layers: list[Path] = []
    for index, item in enumerate(raw):
        try:
            layers.append(resolve_host_path(item, unit_dir))
        except ValueError as exc:
            raise UnitFileError(table.file, f"{table.key('layers')}[{index}]", str(exc), item) from None
    return tuple(layers)


def _binds(table: _Table, unit_dir: Path) -> tuple[BindSpec, ...]:
    raw = table.data.get("binds", [])
    if not isinstance(raw, list):
        raise table.error("binds", 'a list of tables like { source = "/srv", target = "/srv" }', raw)
    binds: list[BindSpec] = []
    for index, item in enumerate(raw):
        bind = _Table(table.file, f"{table.key('binds')}[{index}]", item, BIND_KEYS)
        spec = BindSpec(
            source=bind.require("source", lambda v: resolve_host_path(v, unit_dir)),
            target=bind.require("target", container_path),
            readonly=bind.get("readonly", _bool, False),
        )
        if any(other.target == spec.target for other in binds):
            raise bind.error("target", "a target not bound by an earlier entry", bind.data["target"])
        binds.append(spec)
    return tuple(binds)


def _each_entry(table: _Table, key: str, expected: str, parse: Callable[[object], T]) -> list[tuple[str, object, T]]:
    """(`[table].key[i]`, raw item, parsed item) for a list key; a parse
    error names the entry's index."""
    raw = table.data.get(key, [])
    if not isinstance(raw, list):
        raise table.error(key, expected, raw)
    entries = []
    for index, item in enumerate(raw):
        where = f"{table.key(key)}[{index}]"
        try:
            entries.append((where, item, parse(item)))
        except ValueError as exc:
            raise UnitFileError(table.file, where, str(exc), item) from None
    return entries


def _tmpfs(table: _Table) -> tuple[TmpfsSpec, ...]:
    found: list[TmpfsSpec] = []
    binds = _bind_targets(table)
    for where, item, spec in _each_entry(table, "tmpfs", 'a list like ["/run", "/tmp:size=64M"]', parse_tmpfs):
        if any(t.target == spec.target for t in found) or spec.target in binds:
            raise UnitFileError(table.file, where, "a path not mounted by an earlier tmpfs or a bind", item)
        found.append(spec)
    return tuple(found)


def _bind_targets(table: _Table) -> set[str]:
    raw = table.data.get("binds", [])
    targets = (b.get("target") for b in raw if isinstance(b, Mapping)) if isinstance(raw, list) else ()
    found = set()
    for target in targets:
        try:
            found.add(container_path(target))
        except ValueError:
            pass  # _binds reports it
    return found


def _device(value: object) -> DeviceSpec:
    """ "/dev/fuse" or "/dev/net/tun:rw": a trailing ":" + letters of "rwm" is
    the access (so "/dev/char/10:200" stays a path)."""
    if not isinstance(value, str):
        raise ValueError(DEVICE_EXPECTED)
    path, access = value, DEVICE_ACCESS
    head, colon, tail = value.rpartition(":")
    if colon and tail and set(tail) <= set(DEVICE_ACCESS):
        if len(set(tail)) != len(tail):
            raise ValueError(DEVICE_EXPECTED)
        path, access = head, "".join(c for c in DEVICE_ACCESS if c in tail)
    try:
        path = container_path(path)
    except ValueError:
        raise ValueError(DEVICE_EXPECTED) from None
    parts = path.split("/")[1:]
    if len(parts) < 2 or parts[0] != "dev":
        raise ValueError(DEVICE_EXPECTED)
    if parts[1] in DEV_RESERVED:
        raise ValueError(f"a device path other than /dev/{parts[1]} (supd makes that one)")
    return DeviceSpec(path=path, access=access)


def _devices(table: _Table) -> tuple[DeviceSpec, ...]:
    found: list[DeviceSpec] = []
    for where, item, device in _each_entry(table, "devices", 'a list of device paths like ["/dev/fuse"]', _device):
        if any(d.path == device.path for d in found):
            raise UnitFileError(table.file, where, "a device not listed by an earlier entry", item)
        found.append(device)
    return tuple(found)


NETWORK_EXPECTED: Final = '"bridge", "host", "none" or the name of a network in networks_dir'


def _network(value: object) -> str:
    if not isinstance(value, str) or not NETWORK_NAME_RE.match(value):
        raise ValueError(NETWORK_EXPECTED)
    return value


def _ports(table: _Table, network: str) -> tuple[PortMapping, ...]:
    entries = _each_entry(table, "ports", 'a list of port mappings like ["8080:80"]', parse_port)
    if entries and network in ("host", "none"):
        raise table.error("ports", f'no ports with network = "{network}" (publishing needs a bridge network)', table.data["ports"])
    found: list[PortMapping] = []
    for where, item, port in entries:
        found.append(port)
        clash = clashes(tuple(found))
        if clash is not None:
            raise UnitFileError(table.file, where, f"a host port not published already ({clash[0]})", item)
    return tuple(found)


def _rootfs_section(table: _Table, unit_dir: Path) -> RootfsSpec:
    layers = _layers(table, unit_dir)
    image = table.get("image", _image_ref(unit_dir), None)
    if layers and image is not None:
        raise table.error("image", "either layers or image, not both", table.data["image"])
    if not layers and image is None:
        if table.has("layers"):
            raise table.error("layers", "at least one layer directory", table.data["layers"])
        raise UnitFileError(table.file, table.path, "layers or image", MISSING)
    network = table.get("network", _network, "bridge")
    return RootfsSpec(
        layers=layers,
        image=image,
        pull=cast(PullPolicy, table.get("pull", _choice(get_args(PullPolicy)), "missing")),
        writable=cast(Writable, table.get("writable", _choice(get_args(Writable)), "persistent")),
        hostname=table.get("hostname", _via(_string, values.valid_hostname, values.HOSTNAME_EXPECTED), None),
        network=network,
        ports=_ports(table, network),
        binds=_binds(table, unit_dir),
        tmpfs=_tmpfs(table),
        init=table.get("init", _bool, False),
        devices=_devices(table),
        userns=cast(Userns, table.get("userns", _choice(get_args(Userns)), "host")),
        hosts=_hosts(table),
        dns=_dns(table),
    )


def _address(value: object) -> str:
    """An IP address in its canonical text form (what /etc/hosts gets)."""
    if not isinstance(value, str):
        raise ValueError(ADDRESS_EXPECTED)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(ADDRESS_EXPECTED) from None


def _hosts(table: _Table) -> tuple[tuple[str, str], ...]:
    raw = table.data.get("hosts", {})
    if not isinstance(raw, Mapping):
        raise table.error("hosts", HOSTS_EXPECTED, raw)
    entries: list[tuple[str, str]] = []
    for name, address in raw.items():
        key = f"{table.key('hosts')}.{_render_key(name)}"
        if not values.valid_hostname(name):
            raise UnitFileError(table.file, key, "a hostname key: " + values.HOSTNAME_EXPECTED, name)
        try:
            entries.append((name, _address(address)))
        except ValueError as exc:
            raise UnitFileError(table.file, key, str(exc), address) from None
    return tuple(sorted(entries))


def _dns(table: _Table) -> tuple[str, ...]:
    raw = table.data.get("dns", [])
    if not isinstance(raw, list) or len(raw) > MAX_NAMESERVERS:
        raise table.error("dns", DNS_EXPECTED, raw)
    servers: list[str] = []
    for index, item in enumerate(raw):
        try:
            servers.append(_address(item))
        except ValueError as exc:
            raise UnitFileError(table.file, f"{table.key('dns')}[{index}]", str(exc), item) from None
    return tuple(servers)


def _resources_section(table: _Table) -> Resources:
    weight = _int_in(*WEIGHT_RANGE)
    resources = Resources(
        memory_max=table.get("memory_max", _positive_size_or_unlimited, None),
        memory_high=table.get("memory_high", _positive_size_or_unlimited, None),
        cpu_weight=table.get("cpu_weight", weight, None),
        cpu_quota=table.get("cpu_quota", values.parse_percent, None),
        pids_max=table.get("pids_max", _pids_max, None),
        io_weight=table.get("io_weight", weight, None),
        cpuset=table.get("cpuset", values.parse_cpuset, None),
    )
    if resources.memory_max is not None and resources.memory_high is not None:
        if resources.memory_high > resources.memory_max:
            raise table.error(
                "memory_high",
                f"a size at most memory_max ({resources.memory_max} bytes)",
                table.data["memory_high"],
            )
    return resources


def _restart_section(table: _Table) -> RestartSpec:
    defaults = RestartSpec()
    spec = RestartSpec(
        policy=cast(RestartPolicy, table.get("policy", _choice(get_args(RestartPolicy)), defaults.policy)),
        delay=table.get("delay", _duration(), defaults.delay),
        max_delay=table.get("max_delay", _duration(), defaults.max_delay),
        reset_after=table.get("reset_after", _duration(), defaults.reset_after),
        limit_burst=table.get("limit_burst", _int_in(1, 10000, "an integer in 1..10000"), defaults.limit_burst),
        limit_interval=table.get("limit_interval", _duration(), defaults.limit_interval),
    )
    if spec.max_delay < spec.delay:
        raise table.error(
            "max_delay" if table.has("max_delay") else "delay",
            f"max_delay ({spec.max_delay:g}s) at least delay ({spec.delay:g}s)",
            table.data.get("max_delay", table.data.get("delay")),
        )
    return spec


def _stop_section(table: _Table) -> StopSpec:
    defaults = StopSpec()
    return StopSpec(
        signal=table.get("signal", values.parse_signal, None),
        timeout=table.get("timeout", _duration(), defaults.timeout),
    )


def _health_section(table: _Table) -> HealthSpec:
    defaults = HealthSpec(command=("true",))
    command = _argv(table, "command")
    if command is None:
        raise table.error("command", ARGV_EXPECTED)
    return HealthSpec(
        command=command,
        interval=table.get("interval", _duration(minimum_exclusive=True), defaults.interval),
        timeout=table.get("timeout", _duration(minimum_exclusive=True), defaults.timeout),
        retries=table.get("retries", _int_in(1, 1000, "an integer in 1..1000"), defaults.retries),
        start_period=table.get("start_period", _duration(), defaults.start_period),
        on_failure=cast(HealthAction, table.get("on_failure", _choice(get_args(HealthAction)), defaults.on_failure)),
    )


def _host_pressure(table: _Table) -> tuple[tuple[str, float], ...]:
    raw = table.data.get("on_host_pressure", {})
    if not isinstance(raw, Mapping):
        raise table.error("on_host_pressure", "a table like { memory = 40.0 }", raw)
    pressure = _Table(table.file, table.key("on_host_pressure"), raw, PRESSURE_RESOURCES)
    return tuple(sorted((key, pressure.require(key, _pressure_percent)) for key in raw))


def _freeze_section(table: _Table, resources: Resources) -> FreezeSpec:
    near = table.get("near_memory_max", _fraction_up_to_one, None)
    if near is not None and resources.memory_max is None:
        raise table.error(
            "near_memory_max", "[resources].memory_max to be set as well", table.data["near_memory_max"]
        )
    return FreezeSpec(
        near_memory_max=near,
        on_host_pressure=_host_pressure(table),
        max_frozen=table.get("max_frozen", _duration(minimum_exclusive=True), None),
    )


# --- the file ---


def unit_name_for(path: Path) -> str:
    """The unit name a file stands for: its stem (checked by `load_unit`)."""
    return Path(path).name.removesuffix(UNIT_FILE_SUFFIX)


def load_unit(path: Path) -> Unit:
    """Read, parse and validate one unit file; every problem is a `UnitFileError`."""
    path = Path(path)
    if not path.name.endswith(UNIT_FILE_SUFFIX):
        raise UnitFileError(path, "", f"expected a file name ending in {UNIT_FILE_SUFFIX}")
    name = unit_name_for(path)
    if not values.valid_unit_name(name):
        raise UnitFileError(
            path, "", f"expected the file name to be {values.UNIT_NAME_EXPECTED} plus .toml, got {render_value(name)}"
        )
    raw = _read_bounded(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnitFileError(path, "", f"expected UTF-8 text, got an invalid byte at offset {exc.start}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UnitFileError(path, "", f"expected valid TOML: {exc}") from None
    except RecursionError:
        raise UnitFileError(path, "", "expected valid TOML: nested too deeply") from None
    unit = parse_unit(name, data, path)
    _check_seccomp_profile(unit)
    return unit


def _check_seccomp_profile(unit: Unit) -> None:
    """A profile file is read here, so a broken one is a unit-file error
    when the file is loaded, not a failed start later."""
    mode = unit.exec.seccomp
    if mode is None or mode in SECCOMP_WORDS:
        return
    from supervisor.seccomp.profile import ProfileError
    from supervisor.seccomp.unitfilter import validate_profile

    try:
        validate_profile(mode)
    except ProfileError as exc:
        raise UnitFileError(unit.file, "[exec].seccomp", f"a docker/OCI seccomp JSON profile ({exc})", mode) from None


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing non-regular and oversized files without reading them."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang the daemon; no effect on regular files.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise UnitFileError(path, "", f"expected a readable file, got: {os.strerror(exc.errno or 0)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnitFileError(path, "", f"expected a regular file, got {_file_kind(info.st_mode)}")
        if info.st_size > MAX_UNIT_FILE_SIZE:
            raise UnitFileError(
                path, "", f"expected a file of at most {MAX_UNIT_FILE_SIZE} bytes, got {info.st_size} bytes"
            )
        # The file may grow between fstat and read: never read more than the cap + 1.
        chunks: list[bytes] = []
        budget = MAX_UNIT_FILE_SIZE + 1
        while budget > 0:
            chunk = os.read(fd, budget)
            if not chunk:
                break
            chunks.append(chunk)
            budget -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise UnitFileError(path, "", f"expected a readable file, got: {os.strerror(exc.errno or 0)}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_UNIT_FILE_SIZE:
        raise UnitFileError(path, "", f"expected a file of at most {MAX_UNIT_FILE_SIZE} bytes, got more")
    return data


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
    }  # fmt: skip
    return kinds.get(stat.S_IFMT(mode), "a special file")
