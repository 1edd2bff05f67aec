"""Holding published host ports: supd binds each one for as long as the unit
runs (docker and podman do the same), so a port another process holds fails
the start with a clear error, and nothing takes a published port meanwhile.
The traffic itself never reaches these sockets: portmap's DNAT rules send it
to the container first."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from supervisor.network.ports import PortMapping

_KINDS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM, "sctp": socket.SOCK_SEQPACKET}


class PortTaken(OSError):
    pass


def reserve(ports: Iterable[PortMapping]) -> list[socket.socket]:
    """One bound socket per mapping; on any failure none is kept."""
    held: list[socket.socket] = []
    try:
        for mapping in ports:
            proto = socket.IPPROTO_SCTP if mapping.protocol == "sctp" else 0
            sock = socket.socket(socket.AF_INET, _KINDS[mapping.protocol], proto)
            held.append(sock)
            try:
                sock.bind((mapping.host_ip or "0.0.0.0", mapping.host_port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise PortTaken(e.errno, f"host port {mapping.host_side()} is already in use") from None
                raise OSError(e.errno, f"host port {mapping.host_side()}: {e.strerror}") from None
    except BaseException:
        release(held)
        raise
    return held


def release(held: Iterable[socket.socket]) -> None:
    for sock in held:
        sock.close()
