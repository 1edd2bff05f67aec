"""Private networks through a real supd, the real CNI plugins and the real
kernel (issue 12): published ports, isolation, and nothing left behind after
a stop, a killed pid 1, a kill -9 of supd, or a "reboot".

Each supd under test has its own networks_dir: its default network "supd"
has a bridge, a subnet and a host-local store of its own, and a test that
needs host-local's real store (/var/lib/cni/networks/<net>) adds a network
with a unique name (Supd.add_network). The fixture fails a test that leaves
a veth, a reservation or a rule naming its subnet, then removes the bridge.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.e2e.test_container_confinement import EPERM, probe, probe_layer  # noqa: F401 - a fixture
from tests.e2e.test_containers import SERVICE, container_unit, exec_in, free_port, sh, start_unit
from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.cni import TestNetwork

pytestmark = pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="needs containernetworking-plugins")

HTTPD = ("/bin/httpd", "-f", "-p", "80", "-h", "/www")


@pytest.fixture(scope="module")
def web_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_busybox_rootfs(tmp_path_factory.mktemp("netweb") / "rootfs")
    (root / "www").mkdir(exist_ok=True)
    (root / "www" / "index.html").write_text("hello from a bridge\n")
    return root


def web_unit(layer: Path, *, ports: list[str] = (), network: str | None = None, restart: str = "no") -> str:  # type: ignore[assignment]
    extra = f"ports = [{', '.join(repr(p).replace(chr(39), chr(34)) for p in ports)}]\n"
    if network is not None:
        extra += f'network = "{network}"\n'
    return container_unit([layer], HTTPD, extra_rootfs=extra, restart=restart)


def fetch(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - a test's own server
        return reply.read().decode()


def address_of(supd: Supd, unit: str) -> str:
    network = supd.status(unit)["network"]
    assert network and network["address"], supd.status(unit)
    return str(network["address"])


def attachment_state(supd: Supd) -> list[str]:
    """supd's own records and netns pins."""
    found = []
    for folder in (supd.state / "networks", supd.runtime / "netns"):
        if folder.is_dir():
            found += [str(p) for p in folder.iterdir()]
    return found


def assert_nothing_left(supd: Supd, *networks: TestNetwork) -> None:
    for network in networks or (supd.default_network,):
        assert network.leftovers() == {}, network.leftovers()
    assert attachment_state(supd) == []


# --- reaching and not reaching ------------------------------------------------------


def test_published_port_is_reached_from_the_host(supd: Supd, web_layer: Path) -> None:
    port, local_port = free_port(), free_port()
    st = start_unit(supd, "web", web_unit(web_layer, ports=[f"{port}:80", f"127.0.0.1:{local_port}:80"]))
    address = address_of(supd, "web")
    assert address.startswith(supd.default_network.prefix)
    assert st["network"]["ports"] == [f"{port}:80/tcp", f"127.0.0.1:{local_port}:80/tcp"]
    assert fetch(f"http://127.0.0.1:{local_port}/") == "hello from a bridge\n"
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from a bridge\n"
    assert fetch(f"http://{address}/") == "hello from a bridge\n"
    text = supd.ctl("status", "web").stdout
    assert f"Network: supd ({address})" in text and f"{port}:80/tcp" in text, text
    # the container sees lo and its own eth0, none of the host's interfaces
    ifaces = [line.split(":")[0].strip() for line in sh(supd, "web", "cat /proc/net/dev").splitlines()[2:]]
    assert sorted(ifaces) == ["eth0", "lo"], ifaces
    supd.ctl("stop", "web")
    supd.wait_state("web", "inactive")
    assert_nothing_left(supd)


def test_on_the_default_network_host_interfaces_are_invisible_and_traffic_cannot_be_captured(
    supd: Supd, probe_layer: Path
) -> None:
    start_unit(supd, "box", container_unit([probe_layer]))
    host_ifaces = set(os.listdir("/sys/class/net"))
    inside = set(sh(supd, "box", "ls /sys/class/net").split())
    assert inside == {"eth0", "lo"}, inside
    assert not (inside - {"lo"}) & (host_ifaces - {"lo", "eth0"})
    assert "UP" in sh(supd, "box", "ip link show lo").split("\n")[0]
    # no CAP_NET_RAW: no packet socket to capture with; ping still works
    # through the ICMP datagram sockets ping_group_range opens to every group
    got = probe(supd, "box", "packet_socket", "icmp_echo")
    assert (got["packet_socket"], got["icmp_echo"]) == (EPERM, "ok")
    assert sh(supd, "box", "cat /proc/sys/net/ipv4/ping_group_range").split() == ["0", "2147483647"]
    # what it does see of the host: its gateway, and nothing else on the host's side
    gateway = supd.default_network.prefix + "1"
    routes = sh(supd, "box", "ip -4 route")
    assert f"default via {gateway}" in routes and "192.0.2." not in routes, routes
    supd.ctl("stop", "box")
    supd.wait_state("box", "inactive")


def test_a_container_on_none_reaches_nothing(supd: Supd, web_layer: Path) -> None:
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    host_ip = subprocess.run(["ip", "-4", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True).stdout
    host_ip = host_ip.split(" src ")[1].split()[0]
    try:
        start_unit(supd, "alone", web_unit(web_layer, network="none"))
        assert sh(supd, "alone", "ls /sys/class/net").split() == ["lo"]
        for target in (host_ip, "127.0.0.1", supd.default_network.prefix + "1"):
            out = sh(supd, "alone", f"echo hi | nc -w 2 {target} {port} 2>&1; echo rc=$?")
            assert out.strip().splitlines()[-1] != "rc=0", (target, out)
            assert "unreachable" in out or "refused" in out, (target, out)
        assert supd.status("alone")["network"] is None
    finally:
        listener.close()
    supd.ctl("stop", "alone")
    supd.wait_state("alone", "inactive")


def test_two_containers_on_one_network_reach_each_other(supd: Supd, web_layer: Path) -> None:
    network = supd.add_network("t")
    start_unit(supd, "web", web_unit(web_layer, network=network.name))
    start_unit(supd, "client", web_unit(web_layer, network=network.name))
    web = address_of(supd, "web")
    assert web.startswith(network.prefix) and address_of(supd, "client") != web
    get = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web} 80 2>&1; echo rc=$?"
    assert "hello from a bridge" in sh(supd, "client", get)
    # and not from another network: the firewall plugin's isolation (ingressPolicy same-bridge)
    start_unit(supd, "other", web_unit(web_layer))
    out = sh(supd, "other", get)
    assert "hello from a bridge" not in out, out
    for unit in ("web", "client", "other"):
        supd.ctl("stop", unit)
    for unit in ("web", "client", "other"):
        supd.wait_state(unit, "inactive")
    assert_nothing_left(supd, network, supd.default_network)


# --- nothing left behind ------------------------------------------------------------


def own_network_unit(supd: Supd, layer: Path, suffix: str = "n") -> tuple[TestNetwork, str]:
    """A network with a unique name in host-local's real store, and a unit on it."""
    network = supd.add_network(suffix)
    return network, web_unit(layer, ports=[f"127.0.0.1:{free_port()}:80"], network=network.name)


def wait_attached(supd: Supd, network: TestNetwork, unit: str) -> str:
    address = address_of(supd, unit)
    assert network.reservations() == [address], network.reservations()
    assert network.veths() and network.rules(), network.leftovers()
    return address


def test_pid1_killed_leaves_nothing(supd: Supd, web_layer: Path) -> None:
    network, text = own_network_unit(supd, web_layer)
    st = start_unit(supd, "web", text)
    wait_attached(supd, network, "web")
    os.kill(int(st["pid"]), signal.SIGKILL)
    supd.wait_state("web", "exited", "failed")
    wait_for(lambda: network.leftovers() == {} and attachment_state(supd) == [], what="network cleaned up")
    assert_nothing_left(supd, network, supd.default_network)


def test_supd_killed_then_restarted_removes_what_ended_meanwhile(supd: Supd, web_layer: Path) -> None:
    network, text = own_network_unit(supd, web_layer)
    st = start_unit(supd, "web", text)
    wait_attached(supd, network, "web")
    supd.stop(signal.SIGKILL)
    os.kill(int(st["pid"]), signal.SIGKILL)  # ends while no supd watches
    wait_for(lambda: not os.path.exists(f"/proc/{st['pid']}"), what="pid 1 gone")
    assert network.reservations(), "the reservation outlives supd: the next one must release it"
    supd.start()
    supd.wait_state("web", "exited", "failed", "inactive")
    wait_for(lambda: network.leftovers() == {} and attachment_state(supd) == [], what="reconciled")
    assert_nothing_left(supd, network, supd.default_network)


def test_reboot_reconciles_at_the_next_start(supd: Supd, web_layer: Path) -> None:
    """A reboot as far as supd can tell: it is gone, its processes are gone,
    and its records name another boot. What was attached is DELeted from the
    records before the unit (enabled) starts again on a fresh attachment."""
    network, text = own_network_unit(supd, web_layer)
    st = start_unit(supd, "web", text)
    old_address = wait_attached(supd, network, "web")
    old_id = json.loads((supd.state / "networks" / "web.json").read_text())["container_id"]
    supd.stop(signal.SIGKILL)
    os.kill(int(st["pid"]), signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{st['pid']}"), what="pid 1 gone")
    record = supd.state / "state" / "web.json"
    document = json.loads(record.read_text())
    document["unit"]["boot_id"] = "00000000-0000-0000-0000-000000000000"
    record.write_text(json.dumps(document))
    supd.start()
    st = supd.wait_state("web", "running", "failed")
    assert st["state"] == "running", st
    new_address = wait_attached(supd, network, "web")
    assert network.reservations() == [new_address]
    assert not [r for r in network.rules() if old_id in r], network.rules()
    assert old_address == new_address or old_address not in network.reservations()
    supd.ctl("stop", "web")
    supd.wait_state("web", "inactive")
    assert_nothing_left(supd, network, supd.default_network)


def test_port_taken_by_a_host_process_fails_clearly_and_leaves_nothing(supd: Supd, web_layer: Path) -> None:
    network = supd.add_network("p")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        supd.write_unit("web", web_unit(web_layer, ports=[f"127.0.0.1:{port}:80"], network=network.name))
        supd.start()
        st = supd.wait_state("web", "failed", "running", timeout=30)
        assert st["state"] == "failed", st
        assert f"127.0.0.1:{port}/tcp is already in use" in st["error"] and "[rootfs].ports" in st["error"], st["error"]
        assert network.leftovers() == {} and attachment_state(supd) == []
        assert supd.status("web")["pid"] is None
    finally:
        holder.close()


# --- live restore -------------------------------------------------------------------


def test_readoption_after_supd_sigkill_keeps_address_and_ports(supd: Supd, web_layer: Path) -> None:
    network = supd.add_network("r")
    port = free_port()
    start_unit(supd, "web", web_unit(web_layer, ports=[f"127.0.0.1:{port}:80"], network=network.name))
    address = wait_attached(supd, network, "web")
    pid = supd.status("web")["pid"]
    supd.stop(signal.SIGKILL)
    supd.start()
    st = supd.wait_state("web", "running")
    assert st["pid"] == pid
    assert st["network"]["address"] == address and st["network"]["ports"] == [f"127.0.0.1:{port}:80/tcp"]
    assert not [e for e in supd.events("web") if e["event"] == "network-check-failed"], supd.events("web")
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from a bridge\n"
    assert network.reservations() == [address]
    # the port is held again by the new supd
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("127.0.0.1", port))
    supd.ctl("stop", "web")
    supd.wait_state("web", "inactive")
    assert_nothing_left(supd, network, supd.default_network)


# --- bad input ----------------------------------------------------------------------


def test_unknown_network_is_a_unit_file_error(supd: Supd, web_layer: Path) -> None:
    path = supd.write_unit("web", web_unit(web_layer, network="nosuchnet"))
    supd.start()
    st = supd.wait_state("web", "error")
    assert st["error"].startswith(f"{path}: [rootfs].network: expected"), st["error"]
    assert '"nosuchnet"' in st["error"] and str(supd.networks_dir) in st["error"]


def test_conflist_that_does_not_parse_is_a_unit_file_error_then_fails_the_start(supd: Supd, web_layer: Path) -> None:
    bad = supd.networks_dir / "broken.conflist"
    bad.write_text('{"cniVersion": "1.0.0", "name": "broken", "plugins": [{"bridge": "x"}]}')
    path = supd.write_unit("web", web_unit(web_layer, network="broken"))
    supd.start()
    st = supd.wait_state("web", "error", timeout=30)
    assert st["error"].startswith(f"{path}: [rootfs].network: {bad}: plugins[0].type: expected"), st["error"]
    # fixed and reloaded, the unit loads; broken again after that, its start
    # reads it again and fails, naming the file and what is wrong
    good = supd.add_network("g")
    conflist = json.loads((supd.networks_dir / f"{good.name}.conflist").read_text())
    bad.write_text(json.dumps({**conflist, "name": "broken"}))  # good's bridge and store, under this name
    assert supd.ctl("reload").returncode == 0
    wait_for(lambda: supd.status("web")["state"] not in ("error",), what="web loaded")
    supd.ctl("stop", "web")
    supd.wait_state("web", "inactive", timeout=30)
    bad.write_text("{ not json")
    supd.ctl("start", "web")
    st = supd.wait_state("web", "failed", timeout=30)
    assert st["error"].startswith(f"{path}: [rootfs].network: {bad}: expected a JSON object"), st["error"]
    assert attachment_state(supd) == []


def test_missing_plugin_names_it_and_the_package(supd: Supd, web_layer: Path) -> None:
    network = supd.add_network("m")
    path = supd.networks_dir / f"{network.name}.conflist"
    path.write_text(path.read_text().replace('"type": "firewall"', '"type": "nosuchplugin"'))
    supd.write_unit("web", web_unit(web_layer, network=network.name))
    supd.start()
    st = supd.wait_state("web", "failed", timeout=30)
    assert "'nosuchplugin' not found" in st["error"] and "containernetworking-plugins" in st["error"], st["error"]
    assert network.leftovers() == {} and attachment_state(supd) == []


# --- by name (the /etc/hosts files, daemon/etcfiles.py) -------------------------------


def test_two_containers_on_the_same_network_talk_by_name(supd: Supd) -> None:
    """redis-cli in one container reaches redis-server in another by its unit
    name: each one's address goes into the other's /etc/hosts after its ADD."""
    from tests.e2e.test_real_debian_services import PACKAGES
    from tests.helpers.debian import debian_rootfs

    debian = debian_rootfs(PACKAGES)
    network = supd.add_network("h")
    on_it = f'network = "{network.name}"\n'
    server = ["/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no",
              "--daemonize", "no", "--dir", "/var/lib/redis"]  # fmt: skip
    start_unit(supd, "db", container_unit([debian], server, exec_extra='user = "redis"', extra_rootfs=on_it))
    start_unit(supd, "app", container_unit([debian], ["/bin/sleep", "1000"], extra_rootfs=on_it))
    db = address_of(supd, "db")

    def ping() -> str:
        return exec_in(supd, "app", "redis-cli", "-h", "db", "-p", "6379", "ping")[1].strip()

    assert wait_for(lambda: ping() == "PONG", what="app reaches db by name")
    assert exec_in(supd, "app", "getent", "hosts", "db")[1].split()[0] == db
    assert exec_in(supd, "db", "getent", "hosts", "app")[1].split()[0] == address_of(supd, "app")
    for unit in ("app", "db"):
        supd.ctl("stop", unit)
    for unit in ("app", "db"):
        supd.wait_state(unit, "inactive", "exited")
    assert_nothing_left(supd, network, supd.default_network)
