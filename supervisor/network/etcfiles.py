"""The files every container gets: /etc/hosts, /etc/resolv.conf, /etc/hostname.

Pure: text in, text out, no I/O (daemon/etcfiles.py reads the host's files
and writes the results). The shapes follow what docker and podman write, so
images that look at these files find what they expect.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

# docker's localhost block, v4 and v6, in docker's order
LOCALHOST_LINES = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)
# What docker and podman fall back to when the host's resolv.conf names only
# loopback servers, which cannot answer from another network namespace.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
HEADER = "# written by supd: changes here are lost when the unit restarts\n"


def render_hostname(name: str) -> str:
    return f"{name}\n"


def render_hosts(
    hostname: str,
    address: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
    peers: Sequence[tuple[str, str]] = (),
    host_hosts: str | None = None,
) -> str:
    """`host_hosts`: the host's /etc/hosts, the base on `network = "host"`
    (the container sees the host's addresses, so the host's names mean the
    same there, as under docker); otherwise docker's localhost block. Then
    `extra` ([rootfs].hosts, name → address), the unit's own line (its
    address, else the loopback ones, so its hostname always resolves), and
    `peers` (name → address of the other containers on its network)."""
    lines = [HEADER]
    if host_hosts is not None:
        lines.append(host_hosts if host_hosts.endswith("\n") or not host_hosts else host_hosts + "\n")
    else:
        lines += [f"{addr}\t{names}\n" for addr, names in LOCALHOST_LINES]
    lines += [f"{addr}\t{name}\n" for name, addr in extra]
    if address is not None:
        lines.append(f"{address}\t{hostname}\n")
    else:
        # no address of its own (yet, or network = "none" or "host"): its name still resolves
        lines += [f"127.0.0.1\t{hostname}\n", f"::1\t{hostname}\n"]
    lines += [f"{addr}\t{name}\n" for name, addr in sorted(peers)]
    return "".join(lines)


def nameservers(text: str) -> list[str]:
    """The addresses of a resolv.conf's `nameserver` lines, in order."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1])
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 and ::1 (a zone suffix like fe80::1%eth0 is not loopback)."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def render_resolv(
    host_text: str,
    upstream_text: str | None = None,
    dns: Sequence[str] = (),
    *,
    host_network: bool = False,
) -> str:
    """The container's resolv.conf from the host's (`host_text`).

    On the host's network everything works as on the host (a resolved stub
    on 127.0.0.53 is reachable: same namespace), so the text is kept. In a
    network namespace of its own a loopback server is the container's own
    loopback, where nothing listens: the servers come from `upstream_text`
    (systemd-resolved's /run/systemd/resolve/resolv.conf, the servers the
    stub forwards to) when the host's list has a loopback one, as podman
    does; loopback ones left are dropped, and when none remain, the public
    fallback docker and podman use. `dns` replaces the servers in every case;
    search and options lines are kept."""
    source = host_text
    if not host_network and upstream_text is not None and any(map(is_loopback, nameservers(host_text))):
        source = upstream_text
    others = [line for line in source.splitlines() if line.split()[:1] != ["nameserver"] and line.strip()]
    if dns:
        servers = list(dns)
    elif host_network:
        servers = nameservers(source)
    else:
        servers = [s for s in nameservers(source) if not is_loopback(s)] or list(FALLBACK_NAMESERVERS)
    body = [line for line in others if not line.lstrip().startswith(("#", ";"))]
    return HEADER + "".join(f"{line}\n" for line in body) + "".join(f"nameserver {s}\n" for s in servers)
