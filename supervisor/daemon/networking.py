"""The daemon's side of CNI networks: which network a unit joins, its
published ports, and the ADD / CHECK / DEL of the plugins around its process.

- `prepare(unit)` before the spawn: reads the network's conflist (writing
  the default network `supd` on first use), checks its plugins are
  installed, and binds the published host ports (network/reserve.py).
- `attach(unit, pid)` before the go: pins the netns, writes the attachment
  record, runs ADD, records the result.
- `detach(name)` at the end of a run, a failed start or a reconcile: DEL
  with the recorded configuration and result, unpin, forget.
- `check(name, pid)` after a re-adoption: CHECK against the recorded result.

Errors a unit can cause come out as `NetworkError` (its start fails with the
message); nothing here may end the daemon.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from supervisor.network import netns, reserve
from supervisor.network.attachments import AttachmentRecord, AttachmentStore
from supervisor.network.cni import CniError, CniRunner, Sandbox
from supervisor.network.conflist import (
    CONFLIST_SUFFIX,
    DEFAULT_NETWORK,
    ConflistError,
    NetworkConfig,
    default_conflist,
    parse_conflist,
    result_addresses,
)
from supervisor.network.ports import PortMapping
from supervisor.runtime.reaper import Reaper
from supervisor.units.model import Unit

log = structlog.get_logger()

IFNAME = "eth0"
BRIDGE_WORD = "bridge"  # network = "bridge": the default network
OWN_NETNS_WORDS = ("host", "none")  # no CNI for these


class NetworkError(Exception):
    """A unit's network cannot be set up; the message says why."""


@dataclass(frozen=True)
class Attached:
    """What `supctl status` shows of a unit's network."""

    network: str
    addresses: tuple[str, ...]
    ports: tuple[PortMapping, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "address": self.addresses[0].split("/")[0] if self.addresses else None,
            "addresses": list(self.addresses),
            "ports": [str(p) for p in self.ports],
        }


def uses_cni(unit: Unit) -> bool:
    return unit.rootfs is not None and unit.rootfs.network not in OWN_NETNS_WORDS


def network_name(unit: Unit) -> str:
    assert unit.rootfs is not None
    return DEFAULT_NETWORK if unit.rootfs.network == BRIDGE_WORD else unit.rootfs.network


def known_networks(networks_dir: Path) -> set[str]:
    """Network names a unit may join: the conflists there, and the default."""
    names = {DEFAULT_NETWORK}
    try:
        names |= {p.name.removesuffix(CONFLIST_SUFFIX) for p in networks_dir.glob("*" + CONFLIST_SUFFIX)}
    except OSError:
        pass
    return names


def read_conflist(path: Path) -> NetworkConfig:
    """The network configured in `path`; NetworkError naming the file (and
    the key) when it cannot be read or does not parse. FileNotFoundError
    passes: whether a missing file is an error is the caller's to say."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise NetworkError(f"{path}: cannot read it ({e})") from None
    try:
        return parse_conflist(text, path)
    except ConflistError as e:
        raise NetworkError(str(e)) from None


def network_problems(networks_dir: Path, units: Mapping[str, Unit]) -> dict[str, str]:
    """Unit name -> what is wrong with the network its file names (one that
    is not configured, or a conflist that does not parse): the unit-file
    error at `[rootfs].network`, found when the file is loaded rather than
    at its start. A conflist can still change after that; a start reads it
    again."""
    known = known_networks(networks_dir)
    verdicts: dict[str, str | None] = {}
    problems: dict[str, str] = {}
    for name, unit in units.items():
        if not uses_cni(unit):
            continue
        assert unit.rootfs is not None
        network = network_name(unit)
        if network not in known:
            problems[name] = (
                f'expected "bridge", "host", "none" or a network in {networks_dir} '
                f'({", ".join(sorted(known))}), got "{unit.rootfs.network}"'
            )
            continue
        if network not in verdicts:
            try:
                read_conflist(networks_dir / f"{network}{CONFLIST_SUFFIX}")
                verdicts[network] = None
            except FileNotFoundError:
                verdicts[network] = None  # the default network, written on first use
            except NetworkError as e:
                verdicts[network] = str(e)
        verdict = verdicts[network]
        if verdict is not None:
            problems[name] = verdict
    return problems


def _container_id(unit_name: str) -> str:
    # unique per start: a DEL left over from an earlier run never meets a new ADD
    return f"supd-{re.sub(r'[^A-Za-z0-9_.-]', '-', unit_name)}-{uuid.uuid4().hex[:12]}"


def _runtime_config(ports: tuple[PortMapping, ...]) -> dict[str, Any]:
    return {"portMappings": [p.runtime_config() for p in ports]}


def _live_macs(result: dict[str, Any]) -> dict[str, Any]:
    """The result with each host-side interface's MAC as it is now: udev
    (systemd-udevd's MACAddressPolicy) may re-MAC a veth after ADD, and the
    bridge plugin's CHECK compares MACs."""
    interfaces = []
    for iface in result.get("interfaces") or []:
        iface = dict(iface)
        if not iface.get("sandbox") and iface.get("name"):
            try:
                iface["mac"] = Path(f"/sys/class/net/{iface['name']}/address").read_text().strip()
            except OSError:
                pass
        interfaces.append(iface)
    return {**result, "interfaces": interfaces}


def _port_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """A recorded portMappings entry → PortMapping's fields (the ports the
    process was started with, which an edited unit file may no longer say)."""
    return {
        "host_port": int(entry["hostPort"]),
        "container_port": int(entry["containerPort"]),
        "protocol": entry.get("protocol", "tcp"),
        "host_ip": entry.get("hostIP", ""),
    }


class Networks:
    def __init__(self, networks_dir: Path, state_dir: Path, runtime_dir: Path, reaper: Reaper) -> None:
        self.networks_dir = networks_dir
        self.runtime_dir = runtime_dir
        self.runner = CniRunner(reaper)
        self.records = AttachmentStore(state_dir)
        self._held: dict[str, list[socket.socket]] = {}
        self.attached: dict[str, Attached] = {}
        # "unit got an address on network N" (the /etc/hosts writer listens)
        self.on_address: Callable[[str, str, str], None] | None = None

    # ------------------------------------------------------------ config
    def load(self, name: str) -> NetworkConfig:
        path = self.networks_dir / f"{name}{CONFLIST_SUFFIX}"
        try:
            return read_conflist(path)
        except FileNotFoundError:
            if name != DEFAULT_NETWORK:
                raise NetworkError(f"{path}: no such network configuration") from None
        return parse_conflist(self._write_default(path), path)  # default_conflist() parses (tested)

    def _write_default(self, path: Path) -> str:
        text = default_conflist()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.tmp")
            temp.write_text(text, encoding="utf-8")
            temp.replace(path)
            log.info("default_network_written", path=str(path))
        except OSError as e:
            raise NetworkError(f"{path}: cannot write the default network ({e})") from None
        return text

    # ------------------------------------------------------- per unit
    def prepare(self, unit: Unit) -> NetworkConfig:
        """Before the spawn: the network, its plugins, the host ports held."""
        assert unit.rootfs is not None
        try:
            network = self.load(network_name(unit))
        except NetworkError as e:  # changed or gone since the unit file was loaded
            raise NetworkError(f"{unit.file}: [rootfs].network: {e}") from None
        try:
            self.runner.check_plugins(network)
        except CniError as e:
            raise NetworkError(str(e)) from None
        self.release_ports(unit.name)
        try:
            self._held[unit.name] = reserve.reserve(unit.rootfs.ports)
        except OSError as e:
            raise NetworkError(f"{unit.file}: [rootfs].ports: {e.strerror or e}") from None
        return network

    async def attach(self, unit: Unit, network: NetworkConfig, pid: int) -> Attached:
        assert unit.rootfs is not None
        pin = netns.pin_path(self.runtime_dir, unit.name)
        record = AttachmentRecord(
            unit=unit.name,
            network=network.name,
            cni_version=network.cni_version,
            plugins=network.plugins,
            container_id=_container_id(unit.name),
            netns=str(pin),
            ifname=IFNAME,
            runtime_config=_runtime_config(unit.rootfs.ports),
        )
        # an attachment of an earlier run nobody deleted (its unit was not
        # re-adopted after all): DEL it before its record is replaced
        if self.records.path_for(unit.name).exists():
            await self._delete_recorded(unit.name)
        # written first: a supd killed during ADD still knows what to DEL
        # (fsynced: off the loop, other units' work goes on meanwhile)
        await anyio.to_thread.run_sync(self.records.save, record)
        netns.pin(pid, pin)
        box = Sandbox(record.container_id, str(pin), IFNAME)
        try:
            # Shielded: a plugin killed half way (a start cancelled by a stop)
            # leaves rules and an address behind with no result to DEL them
            # by. The chain finishes (each plugin has its timeout), its result
            # is recorded, and a pending cancel takes effect after that.
            with anyio.CancelScope(shield=True):
                try:
                    result = await self.runner.add(network, box, record.runtime_config)
                except CniError as e:
                    if e.result is not None:  # what the plugins before the failing one made
                        await anyio.to_thread.run_sync(self.records.save, record.with_result(e.result))
                    raise
                await anyio.to_thread.run_sync(self.records.save, record.with_result(result))
        except CniError as e:
            raise NetworkError(str(e)) from None
        await anyio.lowlevel.checkpoint()
        attached = Attached(network.name, result_addresses(result), unit.rootfs.ports)
        self.attached[unit.name] = attached
        self._announce(unit.name, attached)
        return attached

    def _announce(self, unit_name: str, attached: Attached) -> None:
        if self.on_address is None or not attached.addresses:
            return
        try:
            self.on_address(unit_name, attached.network, attached.addresses[0].split("/")[0])
        except Exception:  # a listener's bug is not the unit's
            log.exception("network_address_hook_failed", unit=unit_name)

    async def check(self, unit: Unit, pid: int) -> Attached | None:
        """After a re-adoption: the recorded attachment is still whole (CHECK),
        and its ports are held again. Raises NetworkError when it is not."""
        record = self.records.load(unit.name)
        if record is None or record.result is None:
            return None
        assert unit.rootfs is not None
        if not netns.is_pinned(Path(record.netns)):
            netns.pin(pid, Path(record.netns))
        ports = tuple(PortMapping(**_port_fields(p)) for p in record.runtime_config.get("portMappings", ()))
        try:
            self.release_ports(unit.name)
            self._held[unit.name] = reserve.reserve(ports)
        except OSError as e:  # it kept its DNAT rules: the port still reaches it
            log.warning("network_port_not_held", unit=unit.name, error=str(e))
        attached = Attached(record.network, result_addresses(record.result), ports)
        self.attached[unit.name] = attached
        self._announce(unit.name, attached)
        box = Sandbox(record.container_id, record.netns, record.ifname)
        try:
            await self.runner.check(record.network_config(), box, record.runtime_config, _live_macs(record.result))
        except CniError as e:
            raise NetworkError(str(e)) from None
        return attached

    async def detach(self, unit_name: str) -> list[str]:
        """DEL whatever the record says was attached, then forget it. Returns
        the plugins' errors (logged; the record is dropped all the same, as a
        DEL that fails once fails again)."""
        self.attached.pop(unit_name, None)
        errors = await self._delete_recorded(unit_name)
        self.release_ports(unit_name)
        return errors

    async def _delete_recorded(self, unit_name: str) -> list[str]:
        record = self.records.load(unit_name)
        errors: list[str] = []
        if record is not None:
            pin = Path(record.netns)
            box = Sandbox(record.container_id, record.netns if netns.is_pinned(pin) else "", record.ifname)
            errors = await self.runner.delete(record.network_config(), box, record.runtime_config, record.result)
            for error in errors:
                log.warning("network_del_failed", unit=unit_name, error=error)
            try:
                netns.unpin(pin)
            except OSError as e:
                errors.append(str(e))
                log.warning("netns_unpin_failed", unit=unit_name, error=str(e))
            self.records.remove(unit_name)
        return errors

    def release_ports(self, unit_name: str) -> None:
        reserve.release(self._held.pop(unit_name, []))

    async def reconcile(self, keep: set[str]) -> list[str]:
        """At startup: DEL every recorded attachment whose unit is not being
        re-adopted (supd was killed, the machine rebooted, the unit is gone)."""
        done = []
        for name in self.records.units():
            if name in keep:
                continue
            await self.detach(name)
            done.append(name)
        return done
