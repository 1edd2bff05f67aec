"""The host side of a container's /etc/hosts, /etc/resolv.conf and /etc/hostname.

Each container unit gets its own three files under
`<runtime_dir>/units/<name>/etc/`, which the shim bind-mounts over the paths
inside the root (whatever the image ships there is hidden, as under docker).
This is their only owner: it writes them before the spawn, adds and drops
peers' names while containers run, and removes them when the unit ends.

Files are rewritten in place (same inode): a bind mount pins the inode it was
made from, so a new file renamed over the old one would never be seen by a
running container.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from supervisor.daemon.spawnspec import container_hostname
from supervisor.network import etcfiles as render
from supervisor.units.model import Unit

log = structlog.get_logger()

UNITS_DIR = "units"  # the same <runtime_dir>/units/<name> folder as the rootfs mount point
ETC_DIR = "etc"
HOSTS, HOSTNAME, RESOLV_CONF = "hosts", "hostname", "resolv.conf"
FILE_MODE = 0o644


@dataclass(frozen=True)
class HostSources:
    """Where the host's own files are read (a test points these elsewhere:
    nothing may edit the real /etc/resolv.conf)."""

    resolv_conf: Path = Path("/etc/resolv.conf")
    # systemd-resolved's list of the servers its 127.0.0.53 stub forwards to
    upstream_resolv_conf: Path = Path("/run/systemd/resolve/resolv.conf")
    hosts: Path = Path("/etc/hosts")


@dataclass
class _Entry:
    unit: Unit
    owner: tuple[int, int] | None  # (uid, gid) of a userns container's root
    network: str | None = None
    address: str | None = None
    peers: dict[str, str] = field(default_factory=dict)


class EtcFiles:
    def __init__(self, runtime_dir: Path, sources: HostSources | None = None) -> None:
        self.runtime_dir = Path(runtime_dir)
        self.sources = sources or HostSources()
        # set_address may come from another thread than prepare/forget
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def directory(self, unit_name: str) -> Path:
        return self.runtime_dir / UNITS_DIR / unit_name / ETC_DIR

    def prepare(self, unit: Unit, owner: tuple[int, int] | None = None) -> dict[str, str]:
        """Write the unit's three files; {container path: host path}. Also how a
        re-adopted unit gets its files back (rewritten in place, so the running
        container keeps seeing them). `owner`: the userns container's root, so
        it can write /etc/hosts as root can under docker."""
        assert unit.rootfs is not None
        with self._lock:
            old = self._entries.get(unit.name)
            entry = _Entry(unit, owner)
            if old is not None and old.unit.rootfs is not None and old.unit.rootfs.network == unit.rootfs.network:
                entry.network, entry.address = old.network, old.address
            self._entries[unit.name] = entry
            folder = self.directory(unit.name)
            folder.mkdir(mode=0o755, parents=True, exist_ok=True)
            _write(folder / HOSTNAME, render.render_hostname(container_hostname(unit)), owner)
            _write(folder / RESOLV_CONF, self._resolv(unit), owner)
            self._write_hosts(entry)
        return {f"/etc/{name}": str(folder / name) for name in (HOSTS, HOSTNAME, RESOLV_CONF)}

    def set_address(self, unit_name: str, network: str, address: str) -> None:
        """The unit's address on `network` (after CNI ADD): its own line, and
        its name in the hosts file of every unit on that network (theirs in its)."""
        with self._lock:
            entry = self._entries.get(unit_name)
            if entry is None:
                log.warning("etc_files_unknown_unit", unit=unit_name, network=network)
                return
            left = entry.network
            entry.network, entry.address = network, address
            self._refresh({left, network} - {None})

    def forget(self, unit_name: str) -> None:
        """At the unit's cleanup: its name leaves its peers' files, its own go."""
        with self._lock:
            entry = self._entries.pop(unit_name, None)
            if entry is not None and entry.network is not None:
                self._refresh({entry.network})
        _remove(self.directory(unit_name))

    def remove_leftovers(self, keep: set[str]) -> list[str]:
        """At supd's start: the files of units it no longer has."""
        removed = []
        units = self.runtime_dir / UNITS_DIR
        if not units.is_dir():
            return removed
        for d in units.iterdir():
            if d.name not in keep and (d / ETC_DIR).is_dir() and not (d / ETC_DIR).is_symlink():
                _remove(d / ETC_DIR)
                removed.append(d.name)
        return sorted(removed)

    # ------------------------------------------------------------ internals
    def _refresh(self, networks: set[str]) -> None:
        """Rewrite the hosts file of every unit on these networks."""
        for entry in self._entries.values():
            if entry.network in networks or self._peers_of(entry) != entry.peers:
                self._write_hosts(entry)

    def _peers_of(self, entry: _Entry) -> dict[str, str]:
        if entry.network is None or entry.address is None:
            return {}
        return {
            name: other.address
            for name, other in self._entries.items()
            if other is not entry and other.network == entry.network and other.address is not None
        }

    def _write_hosts(self, entry: _Entry) -> None:
        unit = entry.unit
        assert unit.rootfs is not None
        entry.peers = self._peers_of(entry)
        host_hosts = _read(self.sources.hosts) if unit.rootfs.network == "host" else None
        text = render.render_hosts(
            container_hostname(unit),
            entry.address,
            extra=unit.rootfs.hosts,
            peers=tuple(entry.peers.items()),
            host_hosts=host_hosts,
        )
        path = self.directory(unit.name) / HOSTS
        try:
            _write(path, text, entry.owner)
        except OSError as e:  # one unit's folder gone must not stop the others' updates
            log.warning("etc_hosts_write_failed", unit=unit.name, error=str(e))

    def _resolv(self, unit: Unit) -> str:
        assert unit.rootfs is not None
        host_text = _read(self.sources.resolv_conf) or ""
        upstream = _read(self.sources.upstream_resolv_conf)
        return render.render_resolv(
            host_text, upstream, unit.rootfs.dns, host_network=unit.rootfs.network == "host"
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _write(path: Path, text: str, owner: tuple[int, int] | None) -> None:
    """Replace the content of `path` keeping its inode (created if missing).
    Truncate, then one write: a reader in between sees an empty file at
    worst, never half of the old one mixed with the new."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.ftruncate(fd, 0)
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _remove(folder: Path) -> None:
    """The unit's etc folder: its three files and itself (a folder with
    anything else in it, or a link put there, goes whole)."""
    if folder.is_symlink():
        folder.unlink()
        return
    for name in (HOSTS, HOSTNAME, RESOLV_CONF):
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            break
    try:
        folder.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(folder)
