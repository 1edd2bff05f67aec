"""[rootfs].ports: docker's syntax → portmap's runtimeConfig entries."""

from __future__ import annotations

import pytest

from supervisor.network.ports import PortMapping, clashes, parse_port


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080:80", PortMapping(8080, 80, "tcp", "")),
        ("127.0.0.1:5353:53/udp", PortMapping(5353, 53, "udp", "127.0.0.1")),
        ("1:65535/tcp", PortMapping(1, 65535, "tcp", "")),
        ("0.0.0.0:443:8443/sctp", PortMapping(443, 8443, "sctp", "0.0.0.0")),
    ],
)
def test_parses_dockers_syntax(spec: str, expected: PortMapping) -> None:
    assert parse_port(spec) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", "a port mapping like"),
        ("a:b:c:d", "a port mapping like"),
        ("0:80", "host port in 1..65535"),
        ("65536:80", "host port in 1..65535"),
        ("80:99999", "container port in 1..65535"),
        ("80:-1", "is not a number"),
        ("8000-8001:80", "is not a number"),
        ("80:80/tcpx", "tcp, udp or sctp"),
        ("::1:80:80", "a port mapping like"),
        ("[::1]:80:80", "a port mapping like"),
        ("1.2.3:80:80", "not an IPv4 address"),
        ("", "a port mapping like"),
        (8080, "a port mapping like"),
    ],
)
def test_refuses_what_it_cannot_publish(spec: object, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_port(spec)
    assert expected in str(info.value)


def test_runtime_config_is_portmaps_entry() -> None:
    assert parse_port("8080:80").runtime_config() == {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    assert parse_port("127.0.0.1:5353:53/udp").runtime_config() == {
        "hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1",
    }  # fmt: skip
    assert str(parse_port("127.0.0.1:5353:53/udp")) == "127.0.0.1:5353:53/udp"
    assert parse_port("8080:80").host_side() == "0.0.0.0:8080/tcp"


def test_clashes_are_same_port_protocol_and_overlapping_address() -> None:
    wildcard, local, udp = parse_port("80:80"), parse_port("127.0.0.1:80:81"), parse_port("80:80/udp")
    assert clashes((wildcard, local)) == (wildcard, local)
    assert clashes((wildcard, udp)) is None
    assert clashes((parse_port("127.0.0.1:80:80"), parse_port("127.0.0.2:80:80"))) is None
