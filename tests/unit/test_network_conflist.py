"""Conflist parsing and what each plugin reads on stdin (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.network.conflist import (
    ConflistError,
    default_conflist,
    parse_conflist,
    plugin_has_work,
    plugin_input,
    result_addresses,
)

FILE = Path("/etc/supd/networks/supd.conflist")


def test_default_network_is_bridge_portmap_firewall() -> None:
    network = parse_conflist(default_conflist(), FILE)
    assert network.name == "supd" and network.cni_version == "1.0.0"
    assert network.plugin_types == ("bridge", "portmap", "firewall")
    bridge = network.plugin(0)
    assert bridge["bridge"] == "supd0" and bridge["ipMasq"] is True and bridge["ipam"]["type"] == "host-local"


def test_plugin_input_carries_name_version_prev_result_and_only_wanted_capabilities() -> None:
    network = parse_conflist(default_conflist(), FILE)
    ports = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    first = json.loads(plugin_input(network, 0, None, ports))
    assert first["name"] == "supd" and first["cniVersion"] == "1.0.0"
    assert "runtimeConfig" not in first and "prevResult" not in first
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.123.0.2/16"}]}
    second = json.loads(plugin_input(network, 1, prev, ports))
    assert second["runtimeConfig"] == ports and second["prevResult"] == prev and "capabilities" not in second


def test_portmap_is_left_out_only_where_it_has_no_port_to_map() -> None:
    network = parse_conflist(default_conflist(), FILE)
    ports = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    assert [plugin_has_work(network, i, {}) for i in range(3)] == [True, False, True]
    assert [plugin_has_work(network, i, {"portMappings": []}) for i in range(3)] == [True, False, True]
    assert [plugin_has_work(network, i, ports) for i in range(3)] == [True, True, True]
    # a portmap that does not take the capability is never given ports by supd...
    plain = parse_conflist(
        '{"name": "supd", "cniVersion": "1.0.0", "plugins": [{"type": "bridge"}, {"type": "portmap"}]}', FILE
    )
    assert not plugin_has_work(plain, 1, ports)
    # ...but one with its own static mappings has work whatever the unit publishes
    static = parse_conflist(
        '{"name": "supd", "cniVersion": "1.0.0", "plugins": [{"type": "bridge"}, '
        '{"type": "portmap", "runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 1}]}}]}',
        FILE,
    )
    assert plugin_has_work(static, 1, {})


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("{", "", "a JSON object"),
        ("[]", "", "a JSON object"),
        ('{"name": "other", "cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}', "name", "the file's name"),
        ('{"name": "supd", "cniVersion": "9.9.9", "plugins": [{"type": "bridge"}]}', "cniVersion", "one of"),
        ('{"name": "supd", "cniVersion": "1.0.0", "plugins": []}', "plugins", "non-empty list"),
        ('{"name": "supd", "cniVersion": "1.0.0", "plugins": [{"type": "../x"}]}', "plugins[0].type", "plugin name"),
        ('{"name": "supd", "cniVersion": "1.0.0", "plugins": [{"type": "bridge", "capabilities": 1}]}',
         "plugins[0].capabilities", "an object"),
    ],
)
def test_bad_conflists_name_the_file_and_key(text: str, key: str, expected: str) -> None:
    with pytest.raises(ConflistError) as info:
        parse_conflist(text, FILE)
    assert info.value.key == key and expected in info.value.expected
    assert str(info.value).startswith(f"{FILE}: ")


def test_result_addresses_are_the_containers() -> None:
    result = {
        "interfaces": [{"name": "supd0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.123.0.7/16", "interface": 2, "gateway": "10.123.0.1"}],
    }
    assert result_addresses(result) == ("10.123.0.7/16",)
    assert result_addresses({"interfaces": [{"name": "supd0"}], "ips": [{"address": "10.1.0.1/16", "interface": 0}]}) == ()


def test_only_portmaps_ipv6_check_bug_is_tolerated() -> None:
    from supervisor.network.cni import portmap_ipv6_check_bug

    bug = "could not check ipv6 dnat: chain CNI-DN-13f533bf29ecfc8ce7d97 not found in iptables table nat"
    v4 = {"ips": [{"address": "10.1.0.2/24"}]}
    assert portmap_ipv6_check_bug("portmap", f"network 'n': plugin 'portmap' CHECK failed: {bug}", v4)
    assert not portmap_ipv6_check_bug("bridge", bug, v4)
    assert not portmap_ipv6_check_bug("portmap", bug.replace("ipv6", "ipv4"), v4)
    assert not portmap_ipv6_check_bug("portmap", bug, {"ips": [{"address": "fd00::2/64"}]})


def test_packaging_ships_the_default_network_supd_writes() -> None:
    shipped = Path(__file__).resolve().parents[2] / "packaging" / "supd.conflist"
    assert shipped.read_text() == default_conflist()
