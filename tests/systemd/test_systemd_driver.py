"""SystemdDriver against a real systemd 252 (PID 1 of a sandbox).

Each scenario runs in the sandbox's PID namespace (see scenarios.py); here we
run it, show its output on failure, and check from the host side that it
left no supd scope behind in the sandbox.
"""

from __future__ import annotations

import pytest

from tests.systemd.sandbox import Sandbox
from tests.systemd.scenarios import SCENARIOS

pytestmark = [pytest.mark.systemd, pytest.mark.root]

PRIVATE = Sandbox.inner_private_address
BUS = Sandbox.inner_system_bus_address


def run_scenario(sandbox: Sandbox, name: str, unit: str, address: str) -> str:
    res = sandbox.run_python("tests.systemd.scenarios", name, unit, address)
    output = f"--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
    assert res.returncode == 0, f"scenario {name} via {address} failed (exit {res.returncode}):\n{output}"
    left = sandbox.exec(["systemctl", "list-units", "--all", "--plain", "--no-legend", f"supd-{unit}*.scope"])
    assert unit not in left.stdout, f"scenario {name} left units behind:\n{left.stdout}"
    # the kernel's view too: no scope directory of ours in the sandbox's cgroup tree
    scope_dirs = [p for p in sandbox.payload_dir.rglob("*.scope") if unit in p.name]
    assert not scope_dirs, f"scenario {name} left cgroups behind: {scope_dirs}"
    return res.stdout


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_private_socket(systemd_sandbox: Sandbox, unique_name: str, name: str, no_leaks: None) -> None:
    run_scenario(systemd_sandbox, name, unique_name, PRIVATE)


@pytest.mark.parametrize("name", ["create_remove", "reconnect", "freeze_thaw"])
def test_scenario_system_bus(systemd_sandbox: Sandbox, unique_name: str, name: str, no_leaks: None) -> None:
    run_scenario(systemd_sandbox, name, unique_name, BUS)


def test_failed_start_is_reported_clearly(systemd_sandbox: Sandbox, unique_name: str) -> None:
    out = run_scenario(systemd_sandbox, "failed_job", unique_name, PRIVATE)
    line = next(ln for ln in out.splitlines() if ln.startswith("failed start reported as:"))
    assert f"supd-{unique_name}.scope" in line
