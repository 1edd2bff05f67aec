"""The benchmarks that matter on a pure cgroup v2 host, with crun beside supd
in the same run: container start, freeze + thaw, scope create + remove.

    make bench-v2       (in the pure v2 test VM: tests/vm/purev2.py run -- python bench/purev2.py)
    sudo python3 bench/purev2.py [--runs 15] [--passes 2]    (on any pure v2 host)

In the VM the CPUs are emulated (TCG), which makes absolute times meaningless;
the ratios (supd ÷ crun, supd ÷ by hand) are the figures to read. Prints
markdown; writes bench/results/purev2-<name>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cgroup_scope  # noqa: E402
import figures  # noqa: E402
import freeze_thaw  # noqa: E402
import start_latency  # noqa: E402
from figures import Table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# (table, row, ratio column): the one-line answers, read off the full tables
RATIOS = (
    ("start_latency", "supd", "× crun", "container start, API → exited, ÷ crun run"),
    ("start_latency", "supd (to running)", "× crun", "container start, API → running, ÷ crun run"),
    ("freeze_thaw", "supd API (raw HTTP)", "× crun", "freeze + thaw 51 processes, API, ÷ crun pause + resume"),
    ("cgroup_scope", "cgroupfs driver create + remove (5 limits)", "× by hand",
     "scope create + remove, ÷ mkdir + limits + rmdir by hand"),
)


def ratios(tables: dict[str, Table]) -> Table:
    rows = []
    for table_name, row_name, column, what in RATIOS:
        table = tables.get(table_name)
        if table is None:
            continue
        col = table.columns.index(column)
        for row in table.rows:
            if row[0] == row_name:
                rows.append((what, row[1], row[col]))
    return Table("purev2_ratios", "supd on pure cgroup v2: ratios", ("figure", "supd median ms", "ratio"), tuple(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    # the driver's own log lines go to stderr, not into the markdown on stdout
    from supervisor import log

    log.configure("json", level=logging.WARNING)
    if os.geteuid() != 0:
        sys.exit("bench/purev2.py needs root")
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        print("note: this host is not pure cgroup v2; the figures are this host's", flush=True)
    RESULTS.mkdir(exist_ok=True)
    runs, passes = args.runs, args.passes
    benchmarks: dict[str, Callable[[], Table]] = {
        start_latency.NAME: lambda: start_latency.run(runs, passes),
        freeze_thaw.NAME: lambda: freeze_thaw.run(runs, passes),
        cgroup_scope.NAME: lambda: cgroup_scope.run(runs * 5),
    }
    tables: dict[str, Table] = {}
    failed = []
    for name, bench in benchmarks.items():
        started = time.monotonic()
        try:
            tables[name] = bench()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed.append(name)
            print(f"### {name}: FAILED\n\n```\n{traceback.format_exc()}```\n", flush=True)
            continue
        took = time.monotonic() - started
        (RESULTS / f"purev2-{name}.json").write_text(json.dumps({"seconds": took, **tables[name].to_json()},
                                                                indent=1, default=str))
        print(figures.render_markdown(tables[name]) + f"\n\n_{name}: {took:.0f} s_\n", flush=True)
    print(figures.render_markdown(ratios(tables)), flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
