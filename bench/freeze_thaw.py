"""Freeze + thaw of a 50-process unit, supd vs crun/runc/podman and a direct
v1 freezer write (issue "cgroups"). Figures, not a test.

    sudo python3 bench/freeze_thaw.py [--runs 50] [--passes 3]

The workload everywhere: busybox `sh -c 'for i in $(seq 50); do sleep 100000 & done; wait'`
(51 processes) on the same 2-layer overlay. Per pass, after 3 warm-ups,
--runs round trips of freeze then thaw, best of --passes:

- supd API: `POST /v1/units/f/freeze` then `POST /v1/units/f/thaw`, raw HTTP
  (a fresh connection each); each answer comes once the freezer confirms;
- supctl: `supctl freeze f` then `supctl thaw f` (two client processes);
- crun / runc `pause` + `resume`, podman `pause` + `unpause` (processes);
- direct: write FROZEN to a v1 `freezer.state`, poll until it reads FROZEN,
  write THAWED, poll until THAWED; and the same with cgroup2's
  `cgroup.freeze` + `cgroup.events` (what supd uses on this hybrid host),
  on 51 host processes in a bench cgroup.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cgroup_cleanup  # noqa: E402
import figures  # noqa: E402
import rawhttp  # noqa: E402
from figures import Table  # noqa: E402
from peers import Peers, available  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from start_latency import make_layers, unit_text  # noqa: E402
from supd_instance import SupdInstance  # noqa: E402

NAME = "freeze_thaw"
WARMUPS = 3
PROCESSES = 51  # the shell and its 50 sleeps
FIFTY = "for i in $(seq 50); do sleep 100000 & done; wait"
FREEZER = Path("/sys/fs/cgroup/freezer")
FREEZER_STATE = "freezer.state"
UNIFIED = Path("/sys/fs/cgroup/unified")
CGROUP2_ONLY = Path("/sys/fs/cgroup")  # a pure v2 host's hierarchy
CGROUP_FREEZE, CGROUP_EVENTS = "cgroup.freeze", "cgroup.events"
FROZEN, THAWED = "FROZEN", "THAWED"


def wait_pids(supd: SupdInstance, unit: str, count: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    current = 0
    while time.monotonic() < deadline:
        status = rawhttp.request_json(supd.socket, "GET", f"/v1/units/{unit}")
        current = (status.get("resources") or {}).get("pids_current") or 0
        if status["state"] == "running" and current >= count:
            return current
        time.sleep(0.1)
    raise TimeoutError(f"unit {unit} has {current} processes, expected {count}, after {timeout:.0f} s")


def supd_api(supd: SupdInstance, runs: int) -> list[float]:
    times = []
    for i in range(WARMUPS + runs):
        t0 = time.perf_counter()
        frozen = rawhttp.request_json(supd.socket, "POST", "/v1/units/f/freeze")
        thawed = rawhttp.request_json(supd.socket, "POST", "/v1/units/f/thaw")
        elapsed = time.perf_counter() - t0
        if not frozen["frozen"] or thawed["frozen"]:
            raise RuntimeError(f"freeze answered frozen={frozen['frozen']}, thaw answered frozen={thawed['frozen']}")
        if i >= WARMUPS:
            times.append(elapsed)
    return times


def supd_supctl(supd: SupdInstance, runs: int) -> list[float]:
    times = []
    for i in range(WARMUPS + runs):
        t0 = time.perf_counter()
        supd.supctl("freeze", "f")
        supd.supctl("thaw", "f")
        if i >= WARMUPS:
            times.append(time.perf_counter() - t0)
    return times


def wait_until(file: Path, check: Callable[[str], bool]) -> None:
    deadline = time.monotonic() + 30
    while not check(file.read_text()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{file}: expected state not reached within 30 s")


def v1_round_trip(cgroup: Path) -> None:
    state = cgroup / FREEZER_STATE
    state.write_text(FROZEN)
    wait_until(state, lambda text: text.strip() == FROZEN)
    state.write_text(THAWED)
    wait_until(state, lambda text: text.strip() == THAWED)


def v2_round_trip(cgroup: Path) -> None:
    (cgroup / CGROUP_FREEZE).write_text("1")
    wait_until(cgroup / CGROUP_EVENTS, lambda text: "frozen 1" in text)
    (cgroup / CGROUP_FREEZE).write_text("0")
    wait_until(cgroup / CGROUP_EVENTS, lambda text: "frozen 0" in text)


def direct_freezer(root_name: str, runs: int) -> dict[str, list[float]]:
    """51 host processes in `<root>/direct` of the v1 freezer (where there is
    one) and of cgroup2 (where it can freeze: the hybrid host's unified mount,
    or a pure v2 host's only hierarchy), frozen and thawed by hand: write, then
    poll until confirmed."""
    v1 = FREEZER / root_name / "direct" if FREEZER.is_dir() else None
    v2 = (UNIFIED if UNIFIED.is_dir() else CGROUP2_ONLY) / root_name / "direct"
    homes = [c for c in (v1, v2) if c is not None]
    for cgroup in homes:
        cgroup.mkdir(parents=True, exist_ok=True)  # kept between passes
    homes = [c for c in homes if c == v1 or (c / CGROUP_FREEZE).exists()]
    counted = homes[0]
    shell = subprocess.Popen(["sh", "-c", "read go; " + FIFTY], stdin=subprocess.PIPE, start_new_session=True)
    assert shell.stdin is not None
    try:
        for cgroup in homes:
            (cgroup / "cgroup.procs").write_text(str(shell.pid))
        shell.stdin.write(b"go\n")
        shell.stdin.flush()
        deadline = time.monotonic() + 60
        while len((counted / "cgroup.procs").read_text().split()) < PROCESSES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{counted}: expected {PROCESSES} processes within 60 s")
            time.sleep(0.05)
        results: dict[str, list[float]] = {}
        for name, cgroup, round_trip in (("direct v1 freezer.state", v1, v1_round_trip),
                                         ("direct cgroup2 cgroup.freeze", v2, v2_round_trip)):
            if cgroup not in homes:
                continue
            times = []
            for i in range(WARMUPS + runs):
                t0 = time.perf_counter()
                round_trip(cgroup)
                if i >= WARMUPS:
                    times.append(time.perf_counter() - t0)
            results[name] = times
        return results
    finally:
        if v1 in homes:
            (v1 / FREEZER_STATE).write_text(THAWED)
        if v2 in homes:
            (v2 / CGROUP_FREEZE).write_text("0")
        for pid in (counted / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shell.wait(30)


def peer_jobs(peers: Peers, image: str | None) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for rt in ("crun", "runc"):
        if not available(rt):
            continue
        ov = peers.overlay(rt + "-fifty")
        bundle = peers.bundle(rt, "fifty", ["/bin/sh", "-c", FIFTY], ov["target"])
        argv, cid = peers.runtime_argv(rt), f"bench-{rt}-fifty"
        jobs[f"{rt} pause + resume"] = {
            "kind": "freeze", "overlay_persistent": ov, "marker": "seq 50", "expect_pids": PROCESSES,
            "start": [*argv, "run", "-d", "--bundle", str(bundle), cid], "pause": [*argv, "pause", cid],
            "resume": [*argv, "resume", cid], "delete": [*argv, "delete", "-f", cid]}
    if image:
        p, cid = peers.podman_argv(), "bench-podman-fifty"
        jobs["podman pause + unpause"] = {
            "kind": "freeze", "marker": "seq 50", "expect_pids": PROCESSES,
            "start": [*p, "run", "-d", "--name", cid, *peers.podman_run_flags(), image, "/bin/sh", "-c", FIFTY],
            "pause": [*p, "pause", cid], "resume": [*p, "unpause", cid], "delete": [*p, "rm", "-f", "-t", "0", cid]}
    return jobs


def run(runs: int = 50, passes: int = 3) -> Table:
    notes: list[str] = []
    with scratch_dir(NAME) as work, scratch_dir("p") as podman_dir:
        layers = make_layers(work)
        (work / "units").mkdir()
        (work / "units" / "f.toml").write_text(unit_text(layers, ["/bin/sh", "-c", FIFTY], "no").replace("enabled = false", "enabled = true"))
        bench_root = cgroup_cleanup.unique_root()
        peers = Peers(work / "peers", bench_root, layers, podman_dir)
        samples: dict[str, list[list[float]]] = {}
        try:
            image = None
            if available("podman"):
                try:
                    image = peers.podman_image()
                except Exception as e:  # noqa: BLE001 - a broken peer must not hide the others' figures
                    notes.append(f"podman skipped: {e}")
            jobs = peer_jobs(peers, image)
            with SupdInstance(work / "supd", units_dir=work / "units") as supd:
                supd.wait_ready()
                pids = wait_pids(supd, "f", PROCESSES)
                notes.append(f"supd unit f: {pids} processes")
                for _ in range(passes):
                    samples.setdefault("supd API (raw HTTP)", []).append(supd_api(supd, runs))
                    samples.setdefault("supctl freeze + thaw", []).append(supd_supctl(supd, runs))
                    for name, job in jobs.items():
                        try:
                            samples.setdefault(name, []).append(peers.run_job({**job, "runs": runs}, env=peers.podman_env())["seconds"])
                        except Exception as e:  # noqa: BLE001
                            notes.append(f"{name} failed: {str(e)[-300:]}")
                    for name, times in direct_freezer(bench_root, runs).items():
                        samples.setdefault(name, []).append(times)
        finally:
            leaked = cgroup_cleanup.remove_root(bench_root)
            if leaked:
                notes.append(f"{len(leaked)} processes were left in {bench_root}; killed")
    best = {name: figures.best_pass(p) for name, p in samples.items() if any(p)}
    crun = best.get("crun pause + resume")
    rows = tuple((name, s.median, s.p90, s.median / crun.median if crun else None) for name, s in best.items())
    notes.append(f"freeze then thaw of {PROCESSES} processes; best of {passes} passes of {runs} after {WARMUPS} warm-ups")
    raw = {"runs": runs, "passes": passes, "samples_ms": {n: [[s * 1000 for s in p] for p in ps] for n, ps in samples.items()}}
    return Table(NAME, f"Freeze + thaw of a {PROCESSES}-process unit", ("how", "median ms", "p90 ms", "× crun"),
                 rows, tuple(dict.fromkeys(notes)), raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    print(figures.render_text(run(args.runs, args.passes)))


if __name__ == "__main__":
    main()
