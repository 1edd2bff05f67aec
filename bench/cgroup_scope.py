"""Benchmark: cgroup scope lifecycle and freeze/thaw (figures, not a test).

    sudo python3 bench/cgroup_scope.py [--runs 200]

1. create + remove a scope with 5 limits through the cgroupfs driver, median ms;
2. freeze + thaw a 50-process scope via tree.freeze/thaw, median ms.
`run()` returns both as a `Table` (bench/purev2.py uses it), beside the same
scope made by hand (mkdir, the limit files written, rmdir) as the floor.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
from figures import Table  # noqa: E402

NAME = "cgroup_scope"

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
    # Between runs the sleeper waits in a scope of its own (made by the driver,
    # so v1 cpusets are filled): a v2 slice that delegates controllers may hold
    # no process, and remove() then has nothing to kill — the scope is measured,
    # not a kill.
    parking, _ = await driver.create(
        ScopeSpec("parking", "supd.slice", "supd-bench-parking.scope", "bench", Resources()), sleeper.pid
    )
    times: list[float] = []
    try:
        for i in range(runs):
            t0 = time.perf_counter()
            ref, _ = await driver.create(spec(f"b{i}"), sleeper.pid)
            _move(parking, sleeper.pid)
            await driver.remove(ref)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await driver.remove(parking)
        sleeper.kill()
        sleeper.wait()
    return times


def _move(ref: CgroupRef, pid: int) -> None:
    for _key, path in ref.paths:
        tree.write(path, "cgroup.procs", str(pid))


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


def direct_scope(root: Path, runs: int) -> list[float]:
    """The floor for create + remove: mkdir, the limit files written, rmdir (seconds)."""
    files = {"memory.max": str(64 << 20), "memory.high": str(48 << 20), "cpu.weight": "200",
             "cpu.max": "50000 100000", "pids.max": "64"}
    slice_dir = root / "direct.slice"
    slice_dir.mkdir(parents=True, exist_ok=True)
    for controller in ("memory", "cpu", "pids"):  # what supd's slice enables for its scopes
        try:
            (slice_dir / "cgroup.subtree_control").write_text(f"+{controller}")
        except OSError:
            pass  # not enabled above: its limits are skipped below, as in supd
    times: list[float] = []
    for i in range(runs):
        t0 = time.perf_counter()
        scope = slice_dir / f"d{i}.scope"
        scope.mkdir()
        for name, value in files.items():
            if (scope / name).exists():  # a controller not enabled here is skipped, as supd warns
                (scope / name).write_text(value)
        scope.rmdir()
        times.append(time.perf_counter() - t0)
    slice_dir.rmdir()
    return times


async def _remove_roots(driver: CgroupfsDriver) -> None:
    """Kill whatever a run left and remove the bench's whole cgroup root."""
    for root in driver.roots.values():
        for cg in tree.walk(root):
            tree.signal_pids(tree.procs(cg), signal.SIGKILL)
    for root in driver.roots.values():
        await tree.rmdir_tree(root, attempts=12)


async def _measure(runs: int) -> tuple[str, dict[str, list[float]]]:
    driver = CgroupfsDriver(detect(), "/supdbench" + uuid.uuid4().hex[:8])
    try:
        samples = {
            "cgroupfs driver create + remove (5 limits)": [t / 1000 for t in await bench_driver(driver, runs)],
            "freeze + thaw, 50 processes (tree)": [t / 1000 for t in await bench_freeze(driver, min(runs, 100))],
        }
        if set(driver.roots) == {"unified"}:  # pure v2: one hierarchy, so one mkdir is the whole job
            samples["by hand: mkdir + 5 limits + rmdir"] = direct_scope(driver.roots["unified"], runs)
        return driver.describe(), samples
    finally:
        await _remove_roots(driver)


def run(runs: int = 100) -> Table:
    described, samples = anyio.run(_measure, runs)
    best = {name: figures.summarize(s) for name, s in samples.items()}
    floor = best.get("by hand: mkdir + 5 limits + rmdir")
    rows = tuple((name, s.median, s.p90, s.median / floor.median if floor and "create" in name else None)
                 for name, s in best.items())
    return Table(NAME, "cgroup scope create + remove, freeze + thaw", ("how", "median ms", "p90 ms", "× by hand"),
                 rows, (f"driver: {described}", f"{runs} runs (freeze: {min(runs, 100)})"),
                 {"samples_ms": {n: [t * 1000 for t in s] for n, s in samples.items()}})


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
        await _remove_roots(driver)


if __name__ == "__main__":
    anyio.run(main)
