"""Test networks for e2e tests: each supd under test gets a networks_dir of
its own whose networks have unique names, bridges and subnets (so no test
touches a real supd0 or another session's network), and the checks that
nothing was left behind: veths on the bridge, host-local reservations,
iptables/nft rules naming the subnet."""

from __future__ import annotations

import ipaddress
import json
import random
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from supervisor.network.conflist import default_conflist

HOST_LOCAL_STORE = Path("/var/lib/cni/networks")


def _routes() -> str:
    return subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout


def free_subnet() -> str:
    """A /24 in 10.128.0.0/9 that no route on this machine uses."""
    taken = _routes()
    for _ in range(100):
        subnet = f"10.{random.randint(128, 254)}.{random.randint(0, 255)}.0/24"
        if subnet.rsplit(".", 1)[0] + "." not in taken:
            return subnet
    raise RuntimeError("no free /24 found")


@dataclass(frozen=True)
class TestNetwork:
    name: str
    bridge: str
    subnet: str
    data_dir: Path | None  # None: host-local's own store, /var/lib/cni/networks/<name>

    __test__ = False  # not a test class, for pytest

    @classmethod
    def make(cls, name: str, tag: str, data_dir: Path | None = None) -> TestNetwork:
        return cls(name=name, bridge=f"sdt{tag}"[:15], subnet=free_subnet(), data_dir=data_dir)

    def write(self, networks_dir: Path) -> Path:
        networks_dir.mkdir(parents=True, exist_ok=True)
        path = networks_dir / f"{self.name}.conflist"
        path.write_text(default_conflist(self.name, self.bridge, self.subnet, str(self.data_dir) if self.data_dir else None))
        return path

    @property
    def prefix(self) -> str:
        """"10.200.7." — what every address and rule of this network starts with."""
        return self.subnet.rsplit(".", 1)[0] + "."

    @property
    def store(self) -> Path:
        return (self.data_dir or HOST_LOCAL_STORE) / self.name

    def reservations(self) -> list[str]:
        """Addresses host-local holds (its store has one file per address)."""
        if not self.store.is_dir():
            return []
        found = []
        for p in self.store.iterdir():
            try:
                ipaddress.ip_address(p.name)
            except ValueError:
                continue
            found.append(p.name)
        return sorted(found)

    def veths(self) -> list[str]:
        out = subprocess.run(["ip", "-j", "link", "show", "master", self.bridge], capture_output=True, text=True)
        if out.returncode != 0:
            return []
        return [link["ifname"] for link in json.loads(out.stdout or "[]")]

    def rules(self) -> list[str]:
        """iptables and nft lines that name this network's subnet."""
        lines = []
        for cmd in (["iptables-save"], ["nft", "list", "ruleset"]):
            try:
                out = subprocess.run(cmd, capture_output=True, text=True).stdout
            except FileNotFoundError:
                continue
            lines += [f"{cmd[0]}: {line.strip()}" for line in out.splitlines() if self.prefix in line]
        return lines

    def leftovers(self) -> dict[str, list[str]]:
        found = {"veths": self.veths(), "reservations": self.reservations(), "rules": self.rules()}
        return {k: v for k, v in found.items() if v}

    def isolation_rules(self) -> list[str]:
        """The firewall plugin's per-bridge isolation rules (kept, like the
        bridge itself, after the last container's DEL)."""
        out = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines()
                if line.startswith("-A CNI-ISOLATION-STAGE-") and f"-o {self.bridge} " in line]

    def remove(self) -> None:
        """The bridge and its isolation rules (CNI never deletes them) and host-local's folder;
        after a failed test, also whatever rule still names the subnet (leftovers() said so first)."""
        for rule in self.isolation_rules():
            subprocess.run(["iptables", "-t", "filter", "-D", *shlex.split(rule)[1:]], capture_output=True)
        for table in ("nat", "filter"):
            out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
            for line in out.splitlines():
                if line.startswith("-A ") and self.prefix in line:
                    subprocess.run(["iptables", "-t", table, "-D", *shlex.split(line)[1:]], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.bridge, "type", "bridge"], capture_output=True)
        shutil.rmtree(self.store, ignore_errors=True)
