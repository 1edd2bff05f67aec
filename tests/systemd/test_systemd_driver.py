"""SystemdDriver against a real systemd 252: PID 1 of a sandbox, and the
host's own PID 1 where the host is systemd-booted (see conftest.py).

Each scenario runs as its own process (in the sandbox's PID namespace, or
plainly on the host; see scenarios.py); here we run it, show its output on
failure, and check from outside that it left no supd scope behind.
"""

from __future__ import annotations

import pytest

from tests.systemd.sandbox import HostSystemd, Sandbox
from tests.systemd.scenarios import SCENARIOS, SKIP_EXIT, SKIP_PREFIX

pytestmark = [pytest.mark.systemd, pytest.mark.root]

PRIVATE = Sandbox.inner_private_address
BUS = Sandbox.inner_system_bus_address


def run_scenario(target: Sandbox | HostSystemd, name: str, unit: str, address: str) -> str:
    res = target.run_python("tests.systemd.scenarios", name, unit, address)
    output = f"--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
    if res.returncode == SKIP_EXIT:
        reason = next((ln for ln in res.stdout.splitlines() if ln.startswith(SKIP_PREFIX)), SKIP_PREFIX + "?")
        where = "the host's systemd" if isinstance(target, HostSystemd) else f"nspawn sandbox {target.name}"
        pytest.skip(f"{where}: {reason[len(SKIP_PREFIX):]}")
    assert res.returncode == 0, f"scenario {name} via {address} on {target.name} failed (exit {res.returncode}):\n{output}"
    left = target.exec(["systemctl", "list-units", "--all", "--plain", "--no-legend", f"supd-{unit}*.scope"])
    assert unit not in left.stdout, f"scenario {name} left units behind:\n{left.stdout}"
    # the kernel's view too: no scope directory of ours in supd's slices
    slices = target.payload_dir / "supd.slice"
    scope_dirs = [p for p in slices.rglob("*.scope") if unit in p.name] if slices.is_dir() else []
    assert not scope_dirs, f"scenario {name} left cgroups behind: {scope_dirs}"
    return res.stdout


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_private_socket(
    systemd_target: Sandbox | HostSystemd, unique_name: str, name: str, no_leaks: None
) -> None:
    run_scenario(systemd_target, name, unique_name, PRIVATE)


@pytest.mark.parametrize("name", ["create_remove", "reconnect", "freeze_thaw", "oom_kill"])
def test_scenario_system_bus(
    systemd_target: Sandbox | HostSystemd, unique_name: str, name: str, no_leaks: None
) -> None:
    run_scenario(systemd_target, name, unique_name, BUS)


def test_failed_start_is_reported_clearly(systemd_target: Sandbox | HostSystemd, unique_name: str) -> None:
    out = run_scenario(systemd_target, "failed_job", unique_name, PRIVATE)
    line = next(ln for ln in out.splitlines() if ln.startswith("failed start reported as:"))
    assert f"supd-{unique_name}.scope" in line
