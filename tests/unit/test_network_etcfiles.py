"""The text of a container's /etc/hosts, /etc/resolv.conf and /etc/hostname:
pure renderers, checked line by line against what docker and podman write."""

from __future__ import annotations

from supervisor.network.etcfiles import (
    FALLBACK_NAMESERVERS,
    HEADER,
    is_loopback,
    nameservers,
    render_hostname,
    render_hosts,
    render_resolv,
)

STUB = "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
UPSTREAM = "# This is /run/systemd/resolve/resolv.conf\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch corp.example\n"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_hostname_is_one_line() -> None:
    assert render_hostname("web") == "web\n"


def test_hosts_without_address_has_docker_localhost_block_and_own_name_on_loopback() -> None:
    text = render_hosts("web")
    assert text.startswith(HEADER)
    assert lines(text) == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
        "127.0.0.1\tweb",
        "::1\tweb",
    ]


def test_hosts_with_address_extra_and_peers() -> None:
    text = render_hosts(
        "web",
        "10.88.0.5",
        extra=(("db.local", "10.1.2.3"), ("v6.local", "fd00::3")),
        peers=(("zeta", "10.88.0.9"), ("alpha", "10.88.0.7")),
    )
    got = lines(text)
    assert got[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert got[6:] == [
        "10.1.2.3\tdb.local",
        "fd00::3\tv6.local",
        "10.88.0.5\tweb",
        "10.88.0.7\talpha",  # peers sorted by name
        "10.88.0.9\tzeta",
    ]
    assert "127.0.0.1\tweb" not in got


def test_hosts_on_host_network_starts_from_the_host_file() -> None:
    host = "127.0.0.1 localhost\n192.0.2.10 build-host"  # no trailing newline
    got = lines(render_hosts("web", extra=(("db.local", "10.1.2.3"),), host_hosts=host))
    assert got == ["127.0.0.1 localhost", "192.0.2.10 build-host", "10.1.2.3\tdb.local", "127.0.0.1\tweb", "::1\tweb"]


def test_nameservers_and_loopback() -> None:
    assert nameservers(STUB) == ["127.0.0.53"]
    assert nameservers("nameserver\nnameserver 1.1.1.1 # x\n  \n") == ["1.1.1.1"]
    assert is_loopback("127.0.0.53") and is_loopback("127.1.2.3") and is_loopback("::1")
    assert not is_loopback("10.255.255.53") and not is_loopback("fe80::1%eth0") and not is_loopback("junk")


def test_resolv_stub_replaced_by_upstream_servers() -> None:
    got = lines(render_resolv(STUB, UPSTREAM, ()))
    assert got == ["search corp.example", "nameserver 192.0.2.1", "nameserver 2001:db8::1"]


def test_resolv_only_loopback_and_no_upstream_falls_back_like_docker() -> None:
    got = lines(render_resolv("nameserver 127.0.0.1\nnameserver ::1\noptions ndots:2\n", None, ()))
    assert got == ["options ndots:2"] + [f"nameserver {s}" for s in FALLBACK_NAMESERVERS]


def test_resolv_loopback_dropped_others_kept() -> None:
    got = lines(render_resolv("nameserver 127.0.0.1\nnameserver 10.255.255.53\n", None, ()))
    assert got == ["nameserver 10.255.255.53"]


def test_resolv_upstream_ignored_when_host_has_no_loopback_server() -> None:
    got = lines(render_resolv("nameserver 10.255.255.53\n", UPSTREAM, ()))
    assert got == ["nameserver 10.255.255.53"]


def test_resolv_dns_overrides_servers_keeps_search_and_options() -> None:
    got = lines(render_resolv(STUB, UPSTREAM, ("1.1.1.1", "fd00::53")))
    assert got == ["search corp.example", "nameserver 1.1.1.1", "nameserver fd00::53"]


def test_resolv_host_network_keeps_the_stub() -> None:
    got = lines(render_resolv(STUB, UPSTREAM, (), host_network=True))
    assert got == ["options edns0 trust-ad", "search corp.example", "nameserver 127.0.0.53"]
    assert lines(render_resolv(STUB, UPSTREAM, ("1.1.1.1",), host_network=True))[-1] == "nameserver 1.1.1.1"


def test_resolv_empty_host_file() -> None:
    assert lines(render_resolv("", None, ())) == [f"nameserver {s}" for s in FALLBACK_NAMESERVERS]
