"""Benchmark: cgroup scope lifecycle and freeze/thaw (figures, not a test).

    sudo python3 bench/cgroup_scope.py [--runs 200]

1. create + remove a scope with 5 limits through the cgroupfs driver, median ms;
2. freeze + thaw a 50-process scope via tree.freeze/thaw, median ms.
Works under a throwaway root `/<hierarchy>/supdbench<hex>`, removed at the end.
`bench_driver(driver, ...)` takes any CgroupDriver, so the systemd driver's
figure can be measured the same way (inside its sandbox).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.cgroups import tree  # noqa: E402
from supervisor.cgroups.cgroupfs import CgroupfsDriver  # noqa: E402
from supervisor.cgroups.driver import CgroupDriver, CgroupRef, ScopeSpec  # noqa: E402
from supervisor.cgroups.layout import detect  # noqa: E402
from supervisor.units.model import Resources  # noqa: E402

FIVE_LIMITS = Resources(memory_max=64 << 20, memory_high=48 << 20, cpu_weight=200, cpu_quota=0.5, pids_max=64)
FIFTY = (
    "import os, sys, time\n"
    "for _ in range(49):\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(600); os._exit(0)\n"
    "print('ready', flush=True); time.sleep(600)\n"
)


def spec(unit: str) -> ScopeSpec:
    return ScopeSpec(unit, "supd.slice", f"supd-{unit}.scope", "bench", FIVE_LIMITS)


async def bench_driver(driver: CgroupDriver, runs: int) -> list[float]:
    """create + remove of a scope holding one sleeping process, per run, in ms."""
    sleeper = subprocess.Popen(["sleep", "600"])
    times: list[float] = []
    try:
        for i in range(runs):
            t0 = time.perf_counter()
            ref, _ = await driver.create(spec(f"b{i}"), sleeper.pid)
            # Move it out again so remove() has nothing to kill: measure the scope, not a kill.
            await _move_to_slice(ref, sleeper.pid)
            await driver.remove(ref)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        sleeper.kill()
        sleeper.wait()
    return times


async def _move_to_slice(ref: CgroupRef, pid: int) -> None:
    for _key, path in ref.paths:
        tree.write(path.parent, "cgroup.procs", str(pid))


async def bench_freeze(driver: CgroupfsDriver, runs: int) -> list[float]:
    p = subprocess.Popen([sys.executable, "-c", FIFTY], stdout=subprocess.PIPE)
    assert p.stdout is not None
    ref, _ = await driver.create(spec("freeze"), p.pid)
    try:
        p.stdout.readline()
        deadline = time.monotonic() + 30
        while len(tree.pids_in(ref)) < 50 and time.monotonic() < deadline:
            await anyio.sleep(0.01)
        times: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await tree.freeze(ref)
            await tree.thaw(ref)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        await driver.remove(ref)
        p.wait()
        p.stdout.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    driver = CgroupfsDriver(detect(), "/supdbench" + uuid.uuid4().hex[:8])
    print(f"driver: {driver.describe()}")
    try:
        lifecycle = await bench_driver(driver, args.runs)
        print(f"cgroupfs create+remove scope (5 limits): median {statistics.median(lifecycle):.2f} ms over {args.runs}")
        freeze = await bench_freeze(driver, min(args.runs, 100))
        print(f"freeze+thaw 50-process scope: median {statistics.median(freeze):.2f} ms over {min(args.runs, 100)}")
        # Hook: the systemd driver's figure comes from bench_driver(SystemdDriver, runs)
        # run inside the systemd sandbox (tests/systemd); not measured here.
    finally:
        for root in driver.roots.values():
            for cg in tree.walk(root):
                tree.signal_pids(tree.procs(cg), signal.SIGKILL)
        for root in driver.roots.values():
            await tree.rmdir_tree(root, attempts=12)


if __name__ == "__main__":
    anyio.run(main)
