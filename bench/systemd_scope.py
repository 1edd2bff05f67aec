"""Benchmark: create + remove a scope with 5 limits through SystemdDriver
(figures, not a test).

    sudo python3 bench/systemd_scope.py [--runs 200] [--address private|bus]

The host has no systemd, so this boots a real one as PID 1 of a throwaway
sandbox (tests/systemd/sandbox.py) and re-runs itself inside the sandbox's
PID namespace (`--inner`), where the PIDs it passes to StartTransientUnit
mean something to that systemd. Each run: spawn a sleeper (not timed), then
time StartTransientUnit → JobRemoved(done) and StopUnit → JobRemoved →
ResetFailedUnit (the stop kills the sleeper). The sandbox is torn down at
the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.figures import summarize  # noqa: E402
from supervisor.cgroups.driver import ScopeSpec  # noqa: E402
from supervisor.units.model import Resources  # noqa: E402

FIVE_LIMITS = Resources(memory_max=64 << 20, memory_high=48 << 20, cpu_weight=200, cpu_quota=0.5, pids_max=64)
ADDRESSES = {
    "private": "unix:path=/proc/1/root/run/systemd/private",
    "bus": "unix:path=/proc/1/root/run/dbus/system_bus_socket",
}


async def inner(address: str, runs: int) -> None:
    from supervisor.cgroups.systemd import SystemdDriver

    driver = await SystemdDriver.connect(address)
    create_s: list[float] = []
    remove_s: list[float] = []
    total_s: list[float] = []
    tag = uuid.uuid4().hex[:6]
    try:
        print(f"driver: {driver.describe()}")
        for i in range(runs):
            sleeper = subprocess.Popen(["sleep", "600"])
            unit = f"bench{tag}x{i}"
            spec = ScopeSpec(unit, "supd-bench.slice", f"supd-{unit}.scope", "bench", FIVE_LIMITS)
            t0 = time.perf_counter()
            ref, warnings = await driver.create(spec, sleeper.pid)
            t1 = time.perf_counter()
            await driver.remove(ref)
            t2 = time.perf_counter()
            sleeper.wait(timeout=10)
            if warnings:
                print(f"warnings: {warnings}")
            create_s.append(t1 - t0)
            remove_s.append(t2 - t1)
            total_s.append(t2 - t0)
    finally:
        await driver.aclose()
    for label, samples in (("create+remove", total_s), ("create (job done)", create_s), ("remove (stop job + reset)", remove_s)):
        s = summarize(samples)
        print(f"systemd {label}, scope with 5 limits: median {s.median:.2f} ms, p90 {s.p90:.2f} ms over {s.n}")


def outer(runs: int, address_key: str) -> int:
    from tests.systemd.sandbox import boot

    if os.geteuid() != 0:
        sys.exit("needs root")
    with tempfile.TemporaryDirectory(prefix="supdbench-", dir="/var/tmp") as base:
        sandbox = boot(Path(base))
        print(f"sandbox {sandbox.name}: booted in {sandbox.boot_seconds:.2f} s")
        try:
            res = sandbox.run_pidns(
                ["sh", "-c", f'cd {REPO} && exec "$@"', "sh", sys.executable, str(Path(__file__).resolve()),
                 "--inner", ADDRESSES[address_key], "--runs", str(runs)],
                timeout=600,
                env=dict(os.environ, PYTHONPATH=str(REPO)),
            )  # fmt: skip
            print(res.stdout, end="")
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
            return res.returncode
        finally:
            t0 = time.monotonic()
            problems = sandbox.down()
            print(f"sandbox down in {time.monotonic() - t0:.2f} s{'; left: ' + str(problems) if problems else ''}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--address", choices=sorted(ADDRESSES), default="private")
    parser.add_argument("--inner", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        anyio.run(inner, args.inner, args.runs)
        return
    sys.exit(outer(args.runs, args.address))


if __name__ == "__main__":
    main()
