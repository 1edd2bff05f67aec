"""CNI network configuration lists (`*.conflist`) and what each plugin is
given on stdin. Pure: the text comes in, values or a `ConflistError` (naming
the file and the key) come out.

supd runs the plugins itself (network/cni.py); this module decides what they
read: the plugin's own configuration, the network's `name` and `cniVersion`,
the previous plugin's result (`prevResult`), and the runtime's capabilities
(`runtimeConfig`) for the plugins that declare them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

CONFLIST_SUFFIX = ".conflist"
SUPPORTED_VERSIONS = ("1.0.0", "0.4.0")
# CNI's rule for network names (and supd's for the file that holds one)
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
PLUGIN_TYPE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")

DEFAULT_NETWORK = "supd"
DEFAULT_BRIDGE = "supd0"
DEFAULT_SUBNET = "10.123.0.0/16"


class ConflistError(Exception):
    def __init__(self, file: Path, key: str, expected: str) -> None:
        self.file, self.key, self.expected = file, key, expected
        where = f"{file}: {key}" if key else str(file)
        super().__init__(f"{where}: expected {expected}")


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    cni_version: str
    file: Path
    # each plugin's configuration as JSON text (frozen, comparable)
    plugins: tuple[str, ...]

    def plugin(self, index: int) -> dict[str, Any]:
        return json.loads(self.plugins[index])

    @cached_property  # read for every plugin of every ADD, CHECK and DEL
    def plugin_types(self) -> tuple[str, ...]:
        return tuple(self.plugin(i)["type"] for i in range(len(self.plugins)))


def parse_conflist(text: str, file: Path) -> NetworkConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConflistError(file, "", f"a JSON object ({e})") from None
    if not isinstance(data, dict):
        raise ConflistError(file, "", "a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConflistError(file, "name", "a network name of letters, digits, '_', '.' and '-'")
    if name != file.name.removesuffix(CONFLIST_SUFFIX):
        raise ConflistError(file, "name", f'the file\'s name ("{file.name.removesuffix(CONFLIST_SUFFIX)}"), got "{name}"')
    version = data.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise ConflistError(file, "cniVersion", "one of " + ", ".join(SUPPORTED_VERSIONS))
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ConflistError(file, "plugins", "a non-empty list of plugin objects")
    texts = []
    for index, plugin in enumerate(plugins):
        key = f"plugins[{index}]"
        if not isinstance(plugin, dict):
            raise ConflistError(file, key, "a plugin object")
        kind = plugin.get("type")
        if not isinstance(kind, str) or not PLUGIN_TYPE_RE.match(kind):
            raise ConflistError(file, f"{key}.type", "a plugin name like \"bridge\"")
        caps = plugin.get("capabilities", {})
        if not isinstance(caps, dict):
            raise ConflistError(file, f"{key}.capabilities", "an object")
        texts.append(json.dumps(plugin, sort_keys=True))
    return NetworkConfig(name=name, cni_version=version, file=file, plugins=tuple(texts))


def plugin_input(
    network: NetworkConfig,
    index: int,
    prev_result: dict[str, Any] | None,
    runtime_config: dict[str, Any],
) -> bytes:
    """What plugin `index` reads on stdin."""
    conf = network.plugin(index)
    conf["name"] = network.name
    conf["cniVersion"] = network.cni_version
    wanted = {k for k, v in conf.pop("capabilities", {}).items() if v}
    offered = {k: v for k, v in runtime_config.items() if k in wanted}
    if offered:
        conf["runtimeConfig"] = offered
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return json.dumps(conf).encode()


# containernetworking-plugins' portmap acts on runtimeConfig.portMappings
# alone: without any, its ADD hands the previous result on unchanged and its
# CHECK and DEL return at once (every release since 0.8). A runtime that does
# not start it then saves a Go binary's start at each end of the life of
# every container that publishes nothing.
IDLE_WITHOUT = {"portmap": "portMappings"}


def plugin_has_work(network: NetworkConfig, index: int, runtime_config: dict[str, Any]) -> bool:
    """False only for a plugin known to do nothing without a runtime value
    it is not given (its own static runtimeConfig counts as given)."""
    key = IDLE_WITHOUT.get(network.plugin_types[index])
    if key is None:
        return True
    conf = network.plugin(index)
    static = conf.get("runtimeConfig")
    if isinstance(static, dict) and static.get(key):
        return True
    caps = conf.get("capabilities") or {}
    return bool(caps.get(key)) and bool(runtime_config.get(key))


def default_conflist(
    name: str = DEFAULT_NETWORK, bridge: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET, data_dir: str | None = None
) -> str:
    """The network `network = "bridge"` joins: a NATed bridge, host-local
    addresses, published ports through portmap, and the firewall plugin's
    forward rules, isolating it from every other CNI bridge."""
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
    if data_dir is not None:
        ipam["dataDir"] = data_dir
    document = {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True, "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            # isolation between networks, as docker's: traffic from another
            # bridge into this one is dropped (CNI-ISOLATION-STAGE-1/2)
            {"type": "firewall", "ingressPolicy": "same-bridge"},
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def result_addresses(result: dict[str, Any]) -> tuple[str, ...]:
    """The container's addresses in a CNI result ("10.123.0.5/16")."""
    interfaces = result.get("interfaces") or []
    found = []
    for ip in result.get("ips") or []:
        index = ip.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces) and not interfaces[index].get("sandbox"):
            continue  # an address on the host side (the bridge's gateway)
        address = ip.get("address")
        if isinstance(address, str):
            found.append(address)
    return tuple(found)
