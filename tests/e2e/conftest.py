"""A real `supd` process on temporary folders, driven by the real `supctl`.

Each test gets its own units/state/runtime folders and its own cgroup root
(`/<unique>` inside every hierarchy), so tests never touch a real supd.slice
and can run beside other sessions on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import TestNetwork
from tests.helpers.waiting import TIME_SCALE, wait_for

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Which cgroup driver the e2e supds use: "cgroupfs" (default; each test gets
# its own cgroup root) or "systemd" (needs systemd as PID 1: the pure-v2 VM
# tier runs the cgroup e2e tests a second time with it). systemd puts every
# scope in the one supd.slice, so tests under it run one at a time.
DRIVER = os.environ.get("SUPD_TEST_CGROUP_DRIVER", "cgroupfs")
# The file driver unless told: "auto" would pick journald in the pure-v2 VM
# (systemd as PID 1) and nowhere else, so the same test would read its units'
# output from different places; tests/systemd/test_journald_logs.py covers journald.
LOG_DRIVER = os.environ.get("SUPD_TEST_LOG_DRIVER", "file")
# Every wait is stretched by this factor where the machine is slow by design:
# the pure-v2 VM tier emulates its CPUs (TCG), where starting a Python process
# alone takes seconds. The waits are upper bounds, so a fast run is unchanged.
SYSTEMD_SLICE = "supd.slice"


def cgroup_hierarchies() -> list[Path]:
    """Every mounted hierarchy a supd scope can appear in."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink())


def pid_alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@dataclass
class Supd:
    root: Path
    cgroup_root: str
    units: Path = field(init=False)
    state: Path = field(init=False)
    runtime: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    # live_restore defaults to true; a test's supd stops its units at SIGTERM
    # unless the test asks for live-restore (then it ends with shut_down_for_real).
    extra_args: list[str] = field(default_factory=lambda: ["--no-live-restore"])
    # The default network ("supd", network = "bridge") of this supd: its own
    # bridge, subnet and host-local store, never the machine's supd0.
    networks_dir: Path = field(init=False)
    networks: list[TestNetwork] = field(init=False)

    def __post_init__(self) -> None:
        self.units = self.root / "units"
        self.state = self.root / "state"
        self.runtime = self.root / "runtime"
        self.log_path = self.root / "supd.log"
        self.units.mkdir(parents=True, exist_ok=True)
        self.networks_dir = self.root / "networks"
        tag = self.cgroup_root.removeprefix("/supdtest")
        self.networks = [TestNetwork.make("supd", tag, data_dir=self.root / "cni-ipam")]
        self.networks[0].write(self.networks_dir)

    @property
    def default_network(self) -> TestNetwork:
        return self.networks[0]

    def add_network(self, suffix: str) -> TestNetwork:
        """Another network (network = its name), in host-local's own store."""
        tag = self.cgroup_root.removeprefix("/supdtest")[:10] + suffix
        network = TestNetwork.make(f"supdtest-{tag}", tag)
        self.networks.append(network)
        network.write(self.networks_dir)
        return network

    @property
    def socket(self) -> Path:
        return self.runtime / "supd.sock"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, SUPD_SOCKET=str(self.socket), PYTHONPATH=str(REPO))
        env.pop("NOTIFY_SOCKET", None)
        return env

    @property
    def driver(self) -> str:
        return DRIVER

    def scope_search_roots(self) -> list[Path]:
        """Where this supd's scopes can appear: its own cgroup root in every
        hierarchy (cgroupfs), or systemd's supd.slice."""
        if DRIVER == "systemd":
            return [h / SYSTEMD_SLICE for h in cgroup_hierarchies()]
        return [h / self.cgroup_root.lstrip("/") for h in cgroup_hierarchies()]

    def scope_dirs(self, unit: str) -> list[Path]:
        found: list[Path] = []
        for root in self.scope_search_roots():
            if root.exists():
                found += [Path(p) for p, _d, _f in os.walk(root) if p.endswith(f"/supd-{unit}.scope")]
        return found

    def start(self, *args: str, wait: bool = True) -> None:
        where = ["--cgroup-root", self.cgroup_root] if DRIVER == "cgroupfs" else []
        cmd = [
            sys.executable,
            "-m",
            "supervisor",
            "--units",
            str(self.units),
            "--state-dir",
            str(self.state),
            "--runtime-dir",
            str(self.runtime),
            "--cgroup-driver",
            DRIVER,
            *where,
            "--log-format",
            "json",
            "--log-driver",
            LOG_DRIVER,
            "--networks-dir",
            str(self.networks_dir),
            *self.extra_args,
            *args,
        ]
        logf = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, env=self.env(), cwd=REPO)
        logf.close()
        if wait:
            wait_for(lambda: self.socket.exists() and self.ctl("info").returncode == 0, timeout=20, what="supd socket")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout * TIME_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def ctl(self, *args: str, timeout: float = 60, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "supervisor.cli.main", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout * TIME_SCALE,
            cwd=REPO,
            input=None if input is None else input.decode(),
        )

    def status(self, unit: str) -> dict[str, Any]:
        r = self.ctl("status", unit, "--json")
        assert r.returncode in (0, 3), f"supctl status {unit}: rc={r.returncode} {r.stderr}"
        return json.loads(r.stdout)

    def state_of(self, unit: str) -> str | None:
        r = self.ctl("status", unit, "--json")
        if r.returncode not in (0, 3):
            return None
        return json.loads(r.stdout)["state"]

    def wait_state(self, unit: str, *states: str, timeout: float = 20) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            r = self.ctl("status", unit, "--json")
            if r.returncode in (0, 3):
                st = json.loads(r.stdout)
                if st["state"] in states:
                    return st
            return None

        return wait_for(check, timeout=timeout, interval=0.1, what=f"{unit} in {states}")

    def events(self, unit: str | None = None) -> list[dict[str, Any]]:
        r = self.ctl("events", "-n", "2000", "--json")
        assert r.returncode == 0, r.stderr
        evs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        return [e for e in evs if unit is None or e["unit"] == unit]

    def write_unit(self, name: str, text: str) -> Path:
        path = self.units / f"{name}.toml"
        tmp = self.units / f".{name}.toml.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic, like a careful editor
        return path

    def daemon_log(self) -> str:
        try:
            return self.log_path.read_text()
        except FileNotFoundError:
            return ""


def _kill_procs_in(cgroup: Path) -> None:
    try:
        pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not (cgroup / "cgroup.procs").read_text().strip(), timeout=10, what=f"{cgroup} empty")


def _remove_cgroup_root(name: str) -> list[str]:
    left = []
    for h in cgroup_hierarchies():
        root = h / name
        if not root.exists():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                left.append(dirpath)
    return left


@pytest.fixture
def supd(tmp_path: Path, unique_name: str) -> Iterator[Supd]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = Supd(root=tmp_path, cgroup_root="/" + unique_name)
    try:
        yield d
    finally:
        d.stop()
        scopes_left = []
        for root in d.scope_search_roots():
            if root.exists():
                scopes_left += [p for p, _d, _f in os.walk(root) if p.endswith(".scope")]
        # A failed test may leave units running (live-restore is the default):
        # end them by pid, so that one failure does not leak processes.
        for scope in scopes_left:
            _kill_procs_in(Path(scope))
        left = _remove_cgroup_root(unique_name)
        network_leftovers = {n.name: n.leftovers() for n in d.networks}
        pins = d.runtime / "netns"
        for pin in pins.iterdir() if pins.is_dir() else ():
            network_leftovers.setdefault("pins", {})[pin.name] = [str(pin)]  # type: ignore[index]
            subprocess.run(["umount", "-l", str(pin)], capture_output=True)
        for network in d.networks:
            network.remove()
        if os.environ.get("SUPD_TEST_SHOW_LOG"):
            print(d.daemon_log())
        assert not scopes_left, f"supd left scopes behind: {scopes_left}"
        assert not left, f"cgroups left behind: {left}"
        assert not any(network_leftovers.values()), f"network state left behind: {network_leftovers}"
