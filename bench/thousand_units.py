"""1000 plain units under one supd (issue "supd core"). Figures, not a test.

    sudo python3 bench/thousand_units.py [--units 1000] [--idle 30] [--list-runs 20]

Writes N units (`/bin/sleep 100000`, no rootfs) into a fresh units folder,
starts a self-contained supd (cgroupfs driver, unique cgroup root) and measures:

- time from launching supd until `GET /v1/units` (what `supctl list --json`
  prints) shows all N `running` (asked once supd has N children, which is
  polled every 0.25 s in /proc, so the polling costs supd nothing);
- VmRSS of supd and of its spawner, and the PSS of all the units' log relays;
- CPU of supd (and spawner) while idle: utime+stime over --idle seconds;
- `supctl list --json` latency, median of --list-runs: the whole supctl
  process, and one raw HTTP request over the socket (no client start-up);
- then SIGTERM: time to stop, and whether every unit process and scope is gone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures  # noqa: E402
import procfs  # noqa: E402
import rawhttp  # noqa: E402
from figures import Table  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from supd_instance import SupdInstance  # noqa: E402

NAME = "thousand_units"
UNIT_TEXT = '[exec]\ncommand = ["/bin/sleep", "100000"]\n'
TARGET_START_S = 15.0
TARGET_RSS_MB = 150.0
TARGET_IDLE_CPU_PCT = 1.0
TARGET_LIST_MS = 100.0
POLL_S = 0.25


def write_units(units_dir: Path, count: int) -> list[str]:
    units_dir.mkdir(parents=True, exist_ok=True)
    names = [f"u{i:04d}" for i in range(count)]
    for name in names:
        (units_dir / f"{name}.toml").write_text(UNIT_TEXT)
    return names


def running_count(supd: SupdInstance) -> tuple[int, list[dict[str, Any]]]:
    units = rawhttp.request_json(supd.socket, "GET", "/v1/units", timeout=60)
    return sum(1 for u in units if u["state"] == "running"), units


def wait_all_running(supd: SupdInstance, count: int, timeout: float) -> tuple[float | None, int, list[dict[str, Any]]]:
    """(seconds from launch until all run, or None; how many ran at the end; the list).

    A full list costs supd real work for 1000 units, so polling it often would
    slow the very start being measured: poll supd's children in /proc (cheap,
    no work for supd) and ask the API only once they are all there."""
    deadline = supd.launched_at + timeout
    running, units = 0, []
    while time.monotonic() < deadline:
        if len(procfs.children(supd.pid)) >= count:
            running, units = running_count(supd)
            if running >= count:
                return time.monotonic() - supd.launched_at, running, units
        time.sleep(POLL_S)
    running, units = running_count(supd)
    return None, running, units


def idle_cpu_percent(pids: list[int], seconds: float) -> list[float]:
    before = [procfs.cpu_seconds(p) for p in pids]
    time.sleep(seconds)
    return [(procfs.cpu_seconds(p) - b) / seconds * 100 for p, b in zip(pids, before)]


def list_latencies(supd: SupdInstance, runs: int) -> tuple[list[float], list[float], int]:
    supctl, raw = [], []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        out = supd.supctl("list", "--json")
        supctl.append(time.perf_counter() - t0)
        if len(json.loads(out.stdout)) == 0:
            raise RuntimeError("supctl list --json printed an empty list")
        t0 = time.perf_counter()
        status, body = rawhttp.request(supd.socket, "GET", "/v1/units")
        raw.append(time.perf_counter() - t0)
        size = len(body)
        if status != 200:
            raise RuntimeError(f"GET /v1/units answered {status}")
    return supctl, raw, size


def scopes_left(supd: SupdInstance) -> list[Path]:
    return sorted(Path("/sys/fs/cgroup").glob(f"*/{supd.cgroup_root}/**/supd-*.scope"))


def run(count: int = 1000, idle: float = 30.0, list_runs: int = 20, start_timeout: float = 180.0) -> Table:
    rows: list[tuple[Any, ...]] = []
    notes: list[str] = []
    raw: dict[str, Any] = {"units": count}
    with scratch_dir(NAME) as work:
        names = write_units(work / "units", count)
        supd = SupdInstance(work)
        with supd:
            ready_s = supd.wait_ready()
            all_s, running, units = wait_all_running(supd, count, start_timeout)
            raw.update(socket_ready_s=ready_s, all_running_s=all_s, running=running)
            rows.append(("launch → API answers", ready_s, "s", None, None))
            rows.append((f"launch → all {count} running", all_s if all_s is not None else f">{start_timeout:.0f} ({running} running)",
                         "s", f"< {TARGET_START_S:g}", all_s is not None and all_s < TARGET_START_S))
            confirm = json.loads(supd.supctl("list", "--json").stdout)
            confirmed = sum(1 for u in confirm if u["state"] == "running")
            notes.append(f"supctl list --json after start: {confirmed}/{count} running")
            unit_pids = [u["pid"] for u in units if u.get("pid")]
            spawner = supd.spawner_pid()
            time.sleep(2)  # let start-up garbage settle before reading RSS and idle CPU
            supd_rss = procfs.rss_kb(supd.pid) / 1024
            spawner_rss = procfs.rss_kb(spawner) / 1024 if spawner else None
            raw.update(supd_rss_mb=supd_rss, spawner_rss_mb=spawner_rss, threads=procfs.status_kb(supd.pid, "Threads"))
            rows.append(("supd VmRSS", supd_rss, "MB", f"< {TARGET_RSS_MB:g}", supd_rss < TARGET_RSS_MB))
            rows.append(("spawner VmRSS", spawner_rss, "MB", None, None))
            total = supd_rss + (spawner_rss or 0)
            rows.append(("supd + spawner VmRSS", total, "MB", f"< {TARGET_RSS_MB:g}", total < TARGET_RSS_MB))
            # each unit's log relay (a fork of the spawner, outside the unit's
            # cgroup, as podman's conmon): what they cost all together
            relays = [p for p in procfs.descendants(supd.pid) if procfs.comm(p).startswith("supd-log")]
            relay_pss = sum(procfs.pss_kb(p) or 0 for p in relays) / 1024
            raw.update(log_relays=len(relays), log_relays_pss_mb=relay_pss)
            rows.append((f"log relays ({len(relays)}), PSS all together", relay_pss, "MB", None, None))
            cpu = idle_cpu_percent([supd.pid] + ([spawner] if spawner else []), idle)
            raw.update(idle_cpu_pct=cpu)
            rows.append((f"supd CPU while idle ({idle:g} s)", cpu[0], "% of a core", f"< {TARGET_IDLE_CPU_PCT:g}", cpu[0] < TARGET_IDLE_CPU_PCT))
            if spawner:
                rows.append(("spawner CPU while idle", cpu[1], "% of a core", None, None))
            supctl_s, raw_s, size = list_latencies(supd, list_runs)
            s_supctl, s_raw = figures.summarize(supctl_s), figures.summarize(raw_s)
            raw.update(list_supctl_ms=[x * 1000 for x in supctl_s], list_raw_ms=[x * 1000 for x in raw_s], list_bytes=size)
            rows.append((f"`supctl list --json` (process), median of {list_runs}", s_supctl.median, "ms",
                         f"< {TARGET_LIST_MS:g}", s_supctl.median < TARGET_LIST_MS))
            rows.append(("  p90", s_supctl.p90, "ms", None, None))
            rows.append((f"GET /v1/units raw over the socket, median of {list_runs}", s_raw.median, "ms",
                         f"< {TARGET_LIST_MS:g}", s_raw.median < TARGET_LIST_MS))
            rows.append(("  p90", s_raw.p90, "ms", None, None))
            notes.append(f"GET /v1/units answer: {size / 1024:.0f} KiB for {count} units")
            stop_s = supd.stop()
            rows.append(("SIGTERM → supd exited", stop_s, "s", None, None))
            left = [p for p in unit_pids if procfs.alive(p)]
            scopes = scopes_left(supd)
            raw.update(stop_s=stop_s, processes_left=len(left), scopes_left=len(scopes))
            rows.append(("unit processes left after stop", len(left), f"of {len(unit_pids)}", "0", not left))
            rows.append(("scopes left after stop", len(scopes), "", "0", not scopes))
        if supd.leaked_pids:
            notes.append(f"{len(supd.leaked_pids)} processes were still in the cgroup root at cleanup")
        del names
    missed = [r[0] for r in rows if r[4] is False]
    notes.append("all targets met" if not missed else "TARGET MISSED: " + "; ".join(missed))
    return Table(NAME, f"{count} plain units under one supd", ("figure", "value", "unit", "target", "met"),
                 tuple(rows), tuple(notes), raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--list-runs", type=int, default=20)
    args = parser.parse_args()
    print(figures.render_text(run(args.units, args.idle, args.list_runs)))


if __name__ == "__main__":
    main()
