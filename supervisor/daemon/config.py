"""Daemon configuration: /etc/supd/supd.toml, every key also a `supd` flag.

Flags win over the file; the file wins over the defaults. Errors name the
file, the key and what was expected, like unit-file errors do.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from supervisor.version import VERSION

DEFAULT_CONFIG_FILE = Path("/etc/supd/supd.toml")

CgroupDriverKind = Literal["auto", "systemd", "cgroupfs"]
LogFormat = Literal["auto", "console", "json"]


class ConfigError(Exception):
    def __init__(self, source: str, key: str, expected: str, got: object = None) -> None:
        self.source, self.key, self.expected, self.got = source, key, expected, got
        shown = f", got {got!r}" if got is not None else ""
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: expected {expected}{shown}")


@dataclass(frozen=True)
class DaemonConfig:
    units_dir: Path = Path("/etc/supd/units")
    state_dir: Path = Path("/var/lib/supd")
    runtime_dir: Path = Path("/run/supd")
    cgroup_driver: CgroupDriverKind = "auto"
    cgroup_root: str | None = None
    socket_group: str | None = None
    # Root-equivalent: exec and image import (supervisor/api/access.py).
    admin_group: str | None = None
    log_format: LogFormat = "auto"
    # Restarting or upgrading supd leaves the units running (containerd, conmon
    # and systemd itself keep their workloads across a restart of the manager).
    live_restore: bool = True
    log_max_bytes: int = 10 * 1024 * 1024  # per-unit log file size that triggers rotation
    log_keep: int = 2  # rotated files kept: web.log.1, web.log.2
    # where units' stdout and stderr go unless [exec].log_driver says: auto is
    # journald when systemd runs the host and its journal socket exists, else file
    log_driver: str = "auto"
    # where [rootfs].userns = "auto" units get their ids ("supd:START:COUNT" lines)
    subuid_file: Path = Path("/etc/subuid")
    subgid_file: Path = Path("/etc/subgid")
    # CNI network configuration lists (NAME.conflist); supd writes supd.conflist on first use
    networks_dir: Path = Path("/etc/supd/networks")
    # image pulls (rootfs/pull.py): registries besides loopback reached without
    # TLS, the containers-auth.json used when it exists, and CA folders
    # (<certs_dir>/<host:port>/ca.crt; None: skopeo's /etc/containers/certs.d)
    insecure_registries: tuple[str, ...] = ()
    auth_file: Path = Path("/etc/supd/auth.json")
    certs_dir: Path | None = None

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "supd.sock"


_PATH_KEYS = {"units_dir", "state_dir", "runtime_dir", "subuid_file", "subgid_file", "networks_dir", "auth_file", "certs_dir"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "cgroup_driver": ("auto", "systemd", "cgroupfs"),
    "log_format": ("auto", "console", "json"),
    "log_driver": ("auto", "file", "journald"),
}


def _coerce(source: str, key: str, value: Any, base: Path) -> Any:
    try:
        return _coerce_key(source, key, value, base)
    except ConfigError as e:
        if source == "command line":  # name the flag, not the file key
            raise ConfigError(source, "--" + key.replace("_", "-"), e.expected, e.got) from None
        raise


def _coerce_key(source: str, key: str, value: Any, base: Path) -> Any:
    if key in _PATH_KEYS:
        if not isinstance(value, str) or not value:
            raise ConfigError(source, key, "a path string", value)
        path = Path(value)
        return path if path.is_absolute() else (base / path)
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ConfigError(source, key, "one of " + ", ".join(_CHOICES[key]), value)
        return value
    if key in ("cgroup_root", "socket_group", "admin_group"):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(source, key, "a non-empty string", value)
        return value
    if key == "insecure_registries":
        if not isinstance(value, list) or not all(isinstance(v, str) and v and "/" not in v for v in value):
            raise ConfigError(source, key, 'a list of registries like ["registry.lan:5000"]', value)
        return tuple(value)
    if key == "live_restore":
        if not isinstance(value, bool):
            raise ConfigError(source, key, "true or false", value)
        return value
    if key in ("log_max_bytes", "log_keep"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(source, key, "a positive integer", value)
        return value
    raise ConfigError(source, key, "one of " + ", ".join(f.name for f in fields(DaemonConfig)))


def load_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), "", f"valid TOML ({e})") from None
    except OSError as e:
        raise ConfigError(str(path), "", f"a readable file ({e.strerror})") from None
    section = data.get("supd", data)  # both a bare file and a [supd] table are fine
    if not isinstance(section, dict):
        raise ConfigError(str(path), "[supd]", "a table", section)
    return {k: _coerce(str(path), k, v, path.parent) for k, v in section.items()}


_DEFAULTS = DaemonConfig()


def _default(key: str) -> str:
    """A flag's default as its help shows it: the built-in value, which the config file may change."""
    value = getattr(_DEFAULTS, key)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "none" if value is None else str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="supd",
        description="supd: a container supervisor for one Linux host",
        epilog="Every flag except --config is also a key of the config file; a flag wins over the file.",
    )

    def flag(name: str, key: str, help: str, unset: str = "", **kw: Any) -> None:
        """`unset`: what the default None means, when it means something."""
        shown = f"none, {unset}" if unset else _default(key)
        p.add_argument(name, dest=key, help=f"{help} (default: {shown})", **kw)

    p.add_argument("--config", type=Path, metavar="FILE", help=f"daemon config file (default: {DEFAULT_CONFIG_FILE} if it exists)")
    p.add_argument("--units", "--units-dir", dest="units_dir", metavar="DIR", help=f"folder of *.toml unit files (default: {_DEFAULTS.units_dir})")
    flag("--state-dir", "state_dir", "persistent state: images, logs, unit records", metavar="DIR")
    flag("--runtime-dir", "runtime_dir", "runtime files; the control socket is DIR/supd.sock", metavar="DIR")
    flag("--cgroup-driver", "cgroup_driver", "who creates unit cgroups: auto is systemd when it runs the host, else cgroupfs", choices=_CHOICES["cgroup_driver"])
    flag("--cgroup-root", "cgroup_root", "cgroupfs only: the cgroup path units go under",
         "supd's own delegated cgroup under systemd, else /", metavar="PATH")
    flag("--socket-group", "socket_group", "group that may read and operate units", "root only", metavar="GROUP")
    flag("--admin-group", "admin_group", "group that may also exec and pull, import or remove images: root-equivalent", "root only", metavar="GROUP")
    flag("--log-format", "log_format", "supd's own log: auto is console when stderr is a terminal, else json", choices=_CHOICES["log_format"])
    flag("--live-restore", "live_restore", "leave units running when supd stops, and adopt them at start", action=argparse.BooleanOptionalAction, default=None)
    flag("--log-max-bytes", "log_max_bytes", "rotate a unit's log past this size in bytes", type=int, metavar="BYTES")
    flag("--log-keep", "log_keep", "rotated log files kept per unit", type=int, metavar="N")
    flag("--log-driver", "log_driver", "where units' output goes unless a unit sets [exec].log_driver: "
         "auto is journald when systemd runs the host and its journal socket exists, else file", choices=_CHOICES["log_driver"])
    flag("--subuid-file", "subuid_file", "uids for units with [rootfs].userns = \"auto\"", metavar="FILE")
    flag("--subgid-file", "subgid_file", "gids for units with [rootfs].userns = \"auto\"", metavar="FILE")
    flag("--networks-dir", "networks_dir", "CNI network configurations (NAME.conflist)", metavar="DIR")
    p.add_argument("--version", action="version", version=f"supd {VERSION}")
    return p


def load_config(argv: list[str] | None = None) -> DaemonConfig:
    args = build_parser().parse_args(argv)
    config = DaemonConfig()
    config_file = args.config or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None)
    if config_file is not None:
        config = replace(config, **load_file(Path(config_file)))
    overrides = {
        f.name: _coerce("command line", f.name, getattr(args, f.name), Path.cwd())
        for f in fields(DaemonConfig)
        if getattr(args, f.name, None) is not None
    }
    config = replace(config, **overrides)
    return replace(
        config,
        units_dir=config.units_dir.absolute(),
        state_dir=config.state_dir.absolute(),
        runtime_dir=config.runtime_dir.absolute(),
        networks_dir=config.networks_dir.absolute(),
    )
