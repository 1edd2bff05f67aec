"""Start latency of a busybox container through the Spawner (root).

spawn → go → wait of `/bin/true` in a 2-layer overlay (busybox + an empty
layer, with upper/work), 50 timed starts after 3 warm-ups; prints median and
p90 in ms, plus plain host processes for comparison; each also with a log
relay (what every unit start has: timestamped stdout/stderr, here to
/dev/null), whose exit is waited for after the timed part. A figure, not a test.

    sudo python3 bench/spawn_latency.py [--runs 50] [--concurrent 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor.runtime.reaper import Reaper  # noqa: E402
from supervisor.runtime.spawn import LogRequest, Spawner, wait_relay  # noqa: E402
from supervisor.runtime.spec import ContainerSpec, RootfsMount, SpawnSpec  # noqa: E402
from tests.helpers.busybox import make_busybox_rootfs  # noqa: E402

WARMUPS = 3


def container_spec(work: Path) -> SpawnSpec:
    base = make_busybox_rootfs(work / "base")
    (work / "top").mkdir()
    for name in ("upper", "work", "rootfs"):
        (work / name).mkdir()
    rootfs = RootfsMount(lowerdirs=(str(base), str(work / "top")), upperdir=str(work / "upper"),
                         workdir=str(work / "work"), target=str(work / "rootfs"))
    return SpawnSpec(argv=("/bin/true",), container=ContainerSpec(rootfs=rootfs, hostname="bench"))


RELAY = LogRequest("bench", "file")


async def one_start(spawner: Spawner, reaper: Reaper, spec: SpawnSpec, null: int, relay: bool = False) -> float:
    started = time.perf_counter()
    pending = await spawner.spawn(spec, stdio=(null, null, null), output=RELAY if relay else None)
    await pending.go()
    status = await reaper.wait(pending.pid)
    elapsed = time.perf_counter() - started
    if pending.relay is not None:
        await wait_relay(reaper, pending.relay)
    if status.code != 0:
        raise RuntimeError(f"/bin/true ended with {status.reason}")
    return elapsed


async def measure(spawner: Spawner, reaper: Reaper, spec: SpawnSpec, runs: int, relay: bool = False) -> list[float]:
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for _ in range(WARMUPS):
            await one_start(spawner, reaper, spec, null, relay)
        return [await one_start(spawner, reaper, spec, null, relay) for _ in range(runs)]
    finally:
        os.close(null)


async def concurrent(spawner: Spawner, reaper: Reaper, spec: SpawnSpec, count: int) -> float:
    null = os.open(os.devnull, os.O_RDWR)
    started = time.perf_counter()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one_start, spawner, reaper, spec, null)
    finally:
        os.close(null)
    return time.perf_counter() - started


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[max(0, int(len(ms) * 0.9) - 1)]
    print(f"{name:<40} median {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=0, help="also start this many /bin/true at once")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces and overlay mounts)")
    reaper = Reaper.install()
    spawner = Spawner.launch(reaper)
    try:
        with tempfile.TemporaryDirectory(prefix="supd-bench-") as tmp:
            spec = container_spec(Path(tmp))
            plain = SpawnSpec(argv=("/bin/true",))

            async def run() -> None:
                report("host process (/bin/true)", await measure(spawner, reaper, plain, args.runs))
                report("  with its log relay", await measure(spawner, reaper, plain, args.runs, relay=True))
                report("busybox container, 2-layer overlay", await measure(spawner, reaper, spec, args.runs))
                report("  with its log relay", await measure(spawner, reaper, spec, args.runs, relay=True))
                if args.concurrent:
                    took = await concurrent(spawner, reaper, plain, args.concurrent)
                    print(f"{args.concurrent} concurrent host starts: {took:.2f} s")

            anyio.run(run)
    finally:
        spawner.close()


if __name__ == "__main__":
    main()
