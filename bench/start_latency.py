"""Container start latency, supd vs crun, runc and podman (issue "Containers").

    sudo python3 bench/start_latency.py [--runs 50] [--passes 3]

Same busybox-static rootfs, `/bin/true`, a 2-layer overlay (busybox + a
one-file layer) with an upper dir; --runs timed starts per runtime per pass
after 3 warm-ups, runtimes in blocks one after the other, best of --passes
(the pass with the lowest median: this VM has CPU-steal bursts). What is timed:

- supd: from sending `POST /v1/units/t/start` (raw HTTP over the socket) until
  the event stream delivers the unit's `exited` event (`/bin/true` exited and
  was reaped; state `exited`, restart policy "no"). Covers the API, rootfs
  plan, 10 cgroup hierarchies, the spawner's fork/unshare/overlay/pivot_root,
  go, exec, exit, reap and scope removal. The `running` event (exec done) is
  shown as well;
- crun / runc: overlay mount + `<rt> run` (foreground: create, start, wait,
  delete of state and cgroups) + overlay umount, from a Python loop;
- podman: `podman run --rm` of a 2-layer image (its own overlay storage).
- supd (userns): the same unit with `[rootfs].userns = "auto"` (its own user
  namespace, maps written from outside, both layers mounted id-mapped), ids
  from a subuid/subgid file of the bench's own (`--subuid-file`).

Then memory per running container: one `sleep` container per runtime, and the
processes (with RSS/PSS) the runtime keeps outside the container's cgroup.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cgroup_cleanup  # noqa: E402
import figures  # noqa: E402
import procfs  # noqa: E402
import rawhttp  # noqa: E402
from figures import Table  # noqa: E402
from peers import Peers, available  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from supd_instance import SupdInstance  # noqa: E402

from tests.helpers.busybox import make_busybox_rootfs  # noqa: E402

NAME = "start_latency"
WARMUPS = 3
SLEEPERS = 10
EVENT_TIMEOUT_S = 60.0
SUBID_LINE = "supd:3900000:655360\n"  # the bench's own ids: /etc/subuid stays as it is


def make_layers(work: Path) -> list[Path]:
    base = make_busybox_rootfs(work / "layers" / "busybox")
    top = work / "layers" / "top"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "bench").write_text("second layer\n")
    return [base, top]


def unit_text(layers: list[Path], command: list[str], restart: str, rootfs_extra: str = "") -> str:
    return (
        "[unit]\nenabled = false\n\n"
        f"[exec]\ncommand = {json.dumps(command)}\n\n"
        f"[rootfs]\nlayers = {json.dumps([str(p) for p in layers])}\nwritable = \"persistent\"\n{rootfs_extra}\n"
        f"[restart]\npolicy = \"{restart}\"\n"
    )


def write_units(units_dir: Path, layers: list[Path]) -> None:
    units_dir.mkdir(parents=True, exist_ok=True)
    (units_dir / "t.toml").write_text(unit_text(layers, ["/bin/true"], "no"))
    (units_dir / "tu.toml").write_text(unit_text(layers, ["/bin/true"], "no", 'userns = "auto"\n'))
    for i in range(SLEEPERS):
        (units_dir / f"s{i}.toml").write_text(unit_text(layers, ["/bin/sleep", "100000"], "no"))


def wait_event(events: rawhttp.EventStream, unit: str, wanted: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while time.monotonic() < deadline:
        event = events.next()
        if event.get("unit") == unit and event.get("event") in wanted:
            return event
    raise TimeoutError(f"no {sorted(wanted)} event for {unit} within {EVENT_TIMEOUT_S:.0f} s")


def subid_args(work: Path) -> tuple[str, ...]:
    for name in ("subuid", "subgid"):
        (work / name).write_text(SUBID_LINE)
    return ("--subuid-file", str(work / "subuid"), "--subgid-file", str(work / "subgid"))


def supd_starts(supd: SupdInstance, runs: int, unit: str = "t") -> tuple[list[float], list[float]]:
    """(start → exited, start → running) in seconds, per run."""
    events = rawhttp.EventStream(supd.socket)
    to_exit, to_running = [], []
    try:
        for i in range(WARMUPS + runs):
            t0 = time.perf_counter()
            status, body = rawhttp.request(supd.socket, "POST", f"/v1/units/{unit}/start")
            if status != 200:
                raise RuntimeError(f"POST /v1/units/{unit}/start answered {status}: {body[:200]!r}")
            running = wait_event(events, unit, {"running", "failed"})
            t_running = time.perf_counter()
            if running["event"] != "running":
                raise RuntimeError(f"unit {unit} did not start: {running}")
            exited = wait_event(events, unit, {"exited", "failed", "inactive"})
            t_exit = time.perf_counter()
            if exited["event"] != "exited" or exited.get("reason") != "exit 0":
                raise RuntimeError(f"unit {unit} ended unexpectedly: {exited}")
            if i >= WARMUPS:
                to_exit.append(t_exit - t0)
                to_running.append(t_running - t0)
    finally:
        events.close()
    return to_exit, to_running


def peer_commands(peers: Peers, image: str | None) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for rt in ("crun", "runc"):
        if not available(rt):
            continue
        ov = peers.overlay(rt)
        bundle = peers.bundle(rt, "true", ["/bin/true"], ov["target"])
        jobs[rt] = {"kind": "latency", "overlay": ov, "command": [*peers.runtime_argv(rt), "run", "--bundle", str(bundle), f"bench-{rt}-{{i}}"]}
    if image:
        jobs["podman"] = {"kind": "latency", "command": [*peers.podman_argv(), "run", "--rm", *peers.podman_run_flags(), image, "/bin/true"]}
    return jobs


def resident_jobs(peers: Peers, image: str | None) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for rt in ("crun", "runc"):
        if not available(rt):
            continue
        ov = peers.overlay(rt + "-sleep")
        bundle = peers.bundle(rt, "sleep", ["/bin/sleep", "100001"], ov["target"])
        argv = peers.runtime_argv(rt)
        # the overlay stays mounted for the whole job: mount it by a latency-less prelude
        jobs[rt] = {"kind": "resident", "overlay_persistent": ov, "marker": "sleep 100001",
                    "start": [*argv, "run", "-d", "--bundle", str(bundle), f"bench-{rt}-sleep"],
                    "delete": [*argv, "delete", "-f", f"bench-{rt}-sleep"]}
    if image:
        p = peers.podman_argv()
        jobs["podman"] = {"kind": "resident", "marker": "sleep 100001",
                          "start": [*p, "run", "-d", "--name", "bench-podman-sleep", *peers.podman_run_flags(), image, "/bin/sleep", "100001"],
                          "delete": [*p, "rm", "-f", "-t", "0", "bench-podman-sleep"]}
    return jobs


def outside(result: dict[str, Any]) -> dict[str, Any]:
    procs = [p for p in result["processes"] if not p["inside"]]
    return {"count": len(procs), "comms": sorted({p["comm"] for p in procs}),
            "rss_mb": sum(p["rss_kb"] for p in procs) / 1024, "pss_mb": sum(p["pss_kb"] or 0 for p in procs) / 1024}


def supd_resident(supd: SupdInstance) -> dict[str, Any]:
    """Processes supd keeps outside a running container's cgroup, and supd's memory growth per container."""
    spawner = supd.spawner_pid()
    base = {supd.pid} | ({spawner} if spawner else set())
    before = sum(procfs.rss_kb(p) for p in base)
    for i in range(SLEEPERS):
        rawhttp.request_json(supd.socket, "POST", f"/v1/units/s{i}/start")
    time.sleep(1.0)
    pids = procfs.descendants(supd.pid)
    cgroups = {procfs.memory_cgroup(p) for p in pids if "sleep 100000" in " ".join(procfs.cmdline(p))}
    extra = [p for p in pids if p not in base and procfs.memory_cgroup(p) not in cgroups]
    after = sum(procfs.rss_kb(p) for p in base)
    for i in range(SLEEPERS):
        rawhttp.request_json(supd.socket, "POST", f"/v1/units/s{i}/stop")
    return {"count": len(extra), "comms": sorted({procfs.comm(p) for p in extra}), "rss_mb": 0.0, "pss_mb": 0.0,
            "containers": len(cgroups), "supd_rss_growth_per_container_kb": (after - before) / SLEEPERS}


def run(runs: int = 50, passes: int = 3) -> Table:
    notes: list[str] = []
    raw: dict[str, Any] = {"runs": runs, "passes": passes}
    with scratch_dir(NAME) as work, scratch_dir("p") as podman_dir:
        layers = make_layers(work)
        write_units(work / "units", layers)
        peer_root = cgroup_cleanup.unique_root()
        peers = Peers(work / "peers", peer_root, layers, podman_dir)
        try:
            image = None
            if available("podman"):
                try:
                    image = peers.podman_image()
                except Exception as e:  # noqa: BLE001 - a broken peer must not hide the others' figures
                    notes.append(f"podman skipped: {e}")
            latency_jobs = peer_commands(peers, image)
            samples: dict[str, list[list[float]]] = {"supd": [], "supd (to running)": [], "supd (userns)": [], **{k: [] for k in latency_jobs}}
            resident: dict[str, Any] = {}
            with SupdInstance(work / "supd", units_dir=work / "units", extra_args=subid_args(work)) as supd:
                supd.wait_ready()
                for _ in range(passes):
                    to_exit, to_running = supd_starts(supd, runs)
                    samples["supd"].append(to_exit)
                    samples["supd (to running)"].append(to_running)
                    samples["supd (userns)"].append(supd_starts(supd, runs, "tu")[0])
                    for name, job in latency_jobs.items():
                        samples[name].append(peers.run_job({**job, "runs": runs}, env=peers.podman_env())["seconds"])
                resident["supd"] = supd_resident(supd)
            for name, job in resident_jobs(peers, image).items():
                try:
                    resident[name] = outside(peers.run_job(job, env=peers.podman_env()))
                except Exception as e:  # noqa: BLE001
                    notes.append(f"{name} resident figure failed: {e}")
        finally:
            leaked = cgroup_cleanup.remove_root(peer_root)
            if leaked:
                notes.append(f"{len(leaked)} peer processes were left in {peer_root}; killed")
    best = {name: figures.best_pass(p) for name, p in samples.items()}
    raw["samples_ms"] = {name: [[s * 1000 for s in p] for p in ps] for name, ps in samples.items()}
    raw["resident"] = resident
    crun = best.get("crun")
    rows = []
    for name, s in best.items():
        res = resident.get(name.split(" ")[0]) if "(" not in name else None
        rows.append((name, s.median, s.p90, s.median / crun.median if crun else None,
                     res["count"] if res else None, ", ".join(res["comms"]) if res else None,
                     res["rss_mb"] if res else None, res["pss_mb"] if res else None))
    if "supd" in resident:
        notes.append(f"supd: {resident['supd']['containers']} sleep containers added "
                     f"{resident['supd']['supd_rss_growth_per_container_kb']:.0f} KiB RSS per container to supd + spawner")
    notes.append(f"best of {passes} passes of {runs} starts after {WARMUPS} warm-ups; medians and p90 in ms; "
                 "'resident' = processes a running sleep container keeps outside its own cgroup")
    return Table(NAME, "Container start: busybox /bin/true on a 2-layer overlay",
                 ("runtime", "median ms", "p90 ms", "× crun", "resident procs", "which", "resident RSS MB", "resident PSS MB"),
                 tuple(rows), tuple(notes), raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    print(figures.render_text(run(args.runs, args.passes)))


if __name__ == "__main__":
    main()
