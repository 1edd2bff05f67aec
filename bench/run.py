"""Run every benchmark, write bench/results/<name>.json, print markdown tables.

    sudo python3 bench/run.py [--only NAME ...] [--quick]      (or: make bench)

Needs root (cgroups, namespaces, overlay mounts) and, for the side-by-side
figures, crun, runc, podman and umoci (`make bench` installs them); a missing
peer is left out of the tables. About 6 minutes on a 2-core VM. Not part of
the test suite: these are figures, not pass/fail checks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli_latency  # noqa: E402
import figures  # noqa: E402
import freeze_thaw  # noqa: E402
import image_import  # noqa: E402
import log_throughput  # noqa: E402
import start_latency  # noqa: E402
import thousand_units  # noqa: E402
from figures import Table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

BENCHMARKS: dict[str, tuple[Callable[[], Table], Callable[[], Table]]] = {
    # name: (full run, --quick run)
    thousand_units.NAME: (lambda: thousand_units.run(), lambda: thousand_units.run(count=200, idle=10, list_runs=10)),
    start_latency.NAME: (lambda: start_latency.run(), lambda: start_latency.run(runs=10, passes=1)),
    freeze_thaw.NAME: (lambda: freeze_thaw.run(), lambda: freeze_thaw.run(runs=10, passes=1)),
    image_import.NAME: (lambda: image_import.run(), lambda: image_import.run(rounds=1)),
    cli_latency.NAME: (lambda: cli_latency.run(), lambda: cli_latency.run(rounds=10)),
    log_throughput.NAME: (lambda: log_throughput.run(), lambda: log_throughput.run(seconds=4)),
}


def host() -> dict[str, object]:
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--quick", action="store_true", help="fewer units and samples (a smoke run)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root: cgroups, namespaces and overlay mounts")
    RESULTS.mkdir(exist_ok=True)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"## supd benchmarks, {today}, {host()}\n")
    failed = []
    for name, (full, quick) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        try:
            table = (quick if args.quick else full)()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed.append(name)
            print(f"### {name}: FAILED\n\n```\n{traceback.format_exc()}```\n", flush=True)
            continue
        took = time.monotonic() - started
        record = {"date": today, "host": host(), "seconds": took, "quick": args.quick, **table.to_json()}
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
        print(figures.render_markdown(table) + f"\n\n_{name}: {took:.0f} s_\n", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
