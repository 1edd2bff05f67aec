"""Device rules on the real kernel (root): a container scope made by the
cgroupfs driver refuses devices outside docker's list, on v1 (devices files;
this hybrid host) and v2 (a BPF device program; the pure v2 VM), and the v2
program is also tried on this host's cgroup2 mount, where it is enforced too.

The probe only opens nodes, never reads or writes them: a rule that failed
to refuse would still leave nothing in the host's kernel log or on a disk.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.cgroups import devicebpf, tree
from supervisor.cgroups.cgroupfs import CgroupfsDriver
from supervisor.cgroups.devices import container_policy, rule, v1_list_lines
from supervisor.cgroups.driver import ScopeSpec
from supervisor.cgroups.layout import Layout, LayoutKind
from supervisor.units.model import Resources
from tests.conftest import requires_root

pytestmark = [requires_root, pytest.mark.root]

DEADLINE = 30.0
ALLOWED = "ok"

# Runs as root (so only the device rules can refuse); waits for a line on
# stdin (the test places it in the cgroup first), then reports per probe.
PROBE = r"""
import json, os, stat, sys
sys.stdin.readline()
scratch = sys.argv[1]
out = {}
def try_open(name, path, flags):
    try:
        os.close(os.open(path, flags | os.O_CLOEXEC | os.O_NOCTTY))
        out[name] = "ok"
    except OSError as e:
        out[name] = os.strerror(e.errno)
def try_mknod(name, path, kind, major, minor):
    try:
        os.mknod(path, kind | 0o600, os.makedev(major, minor))
        out[name] = "ok"
    except OSError as e:
        out[name] = os.strerror(e.errno)
try_open("null", "/dev/null", os.O_RDWR)
try_open("zero", "/dev/zero", os.O_RDONLY)
try_open("urandom", "/dev/urandom", os.O_RDONLY)
try_open("ptmx", "/dev/ptmx", os.O_RDWR)
try_mknod("mknod_kmsg", scratch + "/kmsg", stat.S_IFCHR, 1, 11)
try_open("kmsg_node", scratch + "/kmsg", os.O_WRONLY)
try_mknod("mknod_block", scratch + "/disk", stat.S_IFBLK, 7, 0)
try_open("block_node", scratch + "/disk", os.O_RDONLY)
try_mknod("mknod_fuse", scratch + "/fuse", stat.S_IFCHR, 10, 229)
try_open("fuse_node", scratch + "/fuse", os.O_RDWR)
print(json.dumps(out), flush=True)
"""

DEFAULT_EXPECTED = {
    "null": ALLOWED, "zero": ALLOWED, "urandom": ALLOWED, "ptmx": ALLOWED,
    "mknod_kmsg": ALLOWED, "kmsg_node": "Operation not permitted",
    "mknod_block": ALLOWED, "block_node": "Operation not permitted",
    "mknod_fuse": ALLOWED, "fuse_node": "Operation not permitted",
}  # fmt: skip


class Probe:
    def __init__(self, scratch: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(scratch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self) -> dict[str, str]:
        out, _ = self.proc.communicate("go\n", timeout=DEADLINE)
        assert self.proc.returncode == 0, out
        return dict(json.loads(out))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Probe]:
    p = Probe(tmp_path)
    yield p
    p.kill()


def spec(unit: str, devices: object) -> ScopeSpec:
    return ScopeSpec(unit=unit, slice="supd.slice", scope=f"supd-{unit}.scope", description="test",
                     resources=Resources(), devices=devices)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.asyncio
async def test_container_scope_refuses_devices_outside_the_list(
    driver: CgroupfsDriver, layout: Layout, probe: Probe
) -> None:
    policy = container_policy()
    ref, warnings = await driver.create(spec("dev", policy), probe.proc.pid)
    assert warnings == []
    v1 = ref.hierarchy_for("devices")
    if layout.kind is not LayoutKind.UNIFIED:
        assert v1 is not None
        assert (v1 / "devices.list").read_text().split("\n")[:-1] == v1_list_lines(policy)
    assert probe.run() == DEFAULT_EXPECTED
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_extra_device_is_allowed_with_its_access(driver: CgroupfsDriver, probe: Probe) -> None:
    ref, _ = await driver.create(spec("fuse", container_policy([rule("c", 10, 229, "rw")])), probe.proc.pid)
    got = probe.run()
    assert got["fuse_node"] == ALLOWED and got["kmsg_node"] == "Operation not permitted", got
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_plain_scope_keeps_full_access(driver: CgroupfsDriver, layout: Layout, probe: Probe) -> None:
    ref, _ = await driver.create(spec("plain", None), probe.proc.pid)
    v1 = ref.hierarchy_for("devices")
    if v1 is not None:
        assert (v1 / "devices.list").read_text().strip() == "a *:* rwm"
    got = probe.run()
    # the root test process may open the nodes it made (fuse may be absent: ENODEV/ENXIO, not EPERM)
    assert got["kmsg_node"] == ALLOWED and got["block_node"] != "Operation not permitted", got
    await driver.remove(ref)


@pytest.fixture
def cgroup2_dir(layout: Layout, unique_name: str) -> Iterator[Path]:
    """A cgroup2 directory of this test's own: at the pure v2 root, or under
    a hybrid host's `unified` mount. Emptied by pid and removed afterwards."""
    if layout.unified is None:
        pytest.skip("no cgroup2 mount on this host (legacy v1)")
    path = layout.unified.mount / unique_name
    path.mkdir()
    try:
        yield path
    finally:
        deadline = time.monotonic() + DEADLINE
        while True:
            tree.signal_pids(tree.procs(path), signal.SIGKILL)
            try:
                path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def test_bpf_device_program_is_enforced_on_cgroup2(cgroup2_dir: Path, probe: Probe, no_leaks: None) -> None:
    devicebpf.attach(cgroup2_dir, container_policy())
    (cgroup2_dir / "cgroup.procs").write_text(str(probe.proc.pid))
    assert probe.run() == DEFAULT_EXPECTED


def test_bpf_refusal_is_reported(tmp_path: Path) -> None:
    """Attaching to something that is not a cgroup2 directory fails with
    the path and the kernel's reason."""
    with pytest.raises(devicebpf.DeviceProgramError, match=str(tmp_path)):
        devicebpf.attach(tmp_path, container_policy())


def test_one_loaded_program_per_policy_serves_every_scope() -> None:
    # the verifier runs once per policy, not once per container start
    default = container_policy(())
    assert devicebpf.program_for(default) == devicebpf.program_for(default)
    other = container_policy((rule("c", 10, 229, "rwm"),))
    assert devicebpf.program_for(other) != devicebpf.program_for(default)
