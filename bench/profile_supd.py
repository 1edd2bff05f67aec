"""Where supd's time goes with many units, sampled with py-spy (`pip install py-spy`).

    sudo python3 bench/profile_supd.py [--units 1000] [--lists 10] [--top 25]

Starts N plain units and samples supd (all threads, 100 Hz) in two phases:
(1) from launch until all N run; (2) while it answers `GET /v1/units`
--lists times. Prints, per phase, the functions with the most samples
inclusive and exclusive (own time). For finding the cause when
thousand_units.py misses a target; not run by bench/run.py.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rawhttp  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from supd_instance import SupdInstance  # noqa: E402
from thousand_units import wait_all_running, write_units  # noqa: E402

PY_SPY = "py-spy"


def start_sampler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    argv = [PY_SPY, "record", "--pid", str(pid), "--rate", "100", "--threads", "--format", "raw",
            "--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_sampler(sampler: subprocess.Popen[bytes]) -> None:
    sampler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    sampler.wait(60)


def aggregate(collapsed: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("thread ") and not f.startswith("process ")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("own", own)):
        lines.append(f"-- top {top} {title}")
        lines += [f"{n / total * 100:5.1f}%  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--lists", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if shutil.which(PY_SPY) is None:
        sys.exit("py-spy not found: pip install py-spy")
    stamp = int(time.time())
    start_out, list_out = args.out / f"supd-start-{stamp}.txt", args.out / f"supd-list-{stamp}.txt"
    with scratch_dir("profile") as work:
        write_units(work / "units", args.units)
        supd = SupdInstance(work)
        with supd:
            sampler = start_sampler(supd.pid, start_out)
            supd.wait_ready()
            took, running, _ = wait_all_running(supd, args.units, 300)
            stop_sampler(sampler)
            print(f"==== start: {running} of {args.units} running after {took} s")
            print(aggregate(start_out, args.top))
            sampler = start_sampler(supd.pid, list_out)
            t0 = time.monotonic()
            for _ in range(args.lists):
                rawhttp.request(supd.socket, "GET", "/v1/units")
            per = (time.monotonic() - t0) / args.lists
            stop_sampler(sampler)
            print(f"==== list: {args.lists} x GET /v1/units, {per * 1000:.0f} ms each")
            print(aggregate(list_out, args.top))


if __name__ == "__main__":
    main()
