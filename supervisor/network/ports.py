"""`[rootfs].ports` in docker's syntax → port mappings for CNI's portmap. Pure.

Accepted: "8080:80", "127.0.0.1:8080:80", "5353:53/udp", "127.0.0.1:5353:53/udp".
A bare "80" (docker: a random host port) and ranges are refused: a published
port here is always one the user chose.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["tcp", "udp", "sctp"]
PROTOCOLS: tuple[str, ...] = ("tcp", "udp", "sctp")
PORT_EXPECTED = 'a port mapping like "8080:80", "127.0.0.1:8080:80" or "5353:53/udp"'


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: Protocol = "tcp"
    host_ip: str = ""  # "" = every host address

    def runtime_config(self) -> dict[str, object]:
        """One entry of CNI's `portMappings` capability."""
        entry: dict[str, object] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            entry["hostIP"] = self.host_ip
        return entry

    def __str__(self) -> str:
        where = f"{self.host_ip}:" if self.host_ip else ""
        return f"{where}{self.host_port}:{self.container_port}/{self.protocol}"

    def host_side(self) -> str:
        """How an error names the host port: "127.0.0.1:8080/tcp"."""
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}/{self.protocol}"


def _port(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{PORT_EXPECTED} ({what} {text!r} is not a number)")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"a {what} in 1..65535")
    return port


def parse_port(spec: object) -> PortMapping:
    """One docker-style mapping; ValueError says what was expected."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(PORT_EXPECTED)
    text, protocol = spec, "tcp"
    if "/" in spec:
        text, protocol = spec.rsplit("/", 1)
        if protocol not in PROTOCOLS:
            raise ValueError(f"{PORT_EXPECTED}, with a protocol of tcp, udp or sctp")
    parts = text.split(":")
    host_ip = ""
    if len(parts) == 3:
        host_ip = parts[0]
        try:
            address = ipaddress.ip_address(host_ip)
        except ValueError:
            raise ValueError(f"{PORT_EXPECTED} (host address {host_ip!r} is not an IPv4 address)") from None
        if address.version != 4:
            raise ValueError(f"{PORT_EXPECTED} (host address {host_ip!r} is not an IPv4 address)")
        parts = parts[1:]
    if len(parts) != 2:
        raise ValueError(PORT_EXPECTED)
    return PortMapping(
        host_port=_port(parts[0], "host port"),
        container_port=_port(parts[1], "container port"),
        protocol=protocol,  # type: ignore[arg-type]
        host_ip=host_ip,
    )


def clashes(ports: tuple[PortMapping, ...]) -> tuple[PortMapping, PortMapping] | None:
    """Two mappings of the same host port and protocol whose addresses overlap."""
    for i, a in enumerate(ports):
        for b in ports[i + 1 :]:
            if a.host_port == b.host_port and a.protocol == b.protocol:
                if not a.host_ip or not b.host_ip or a.host_ip == b.host_ip:
                    return a, b
    return None
