"""Container start latency, supd vs crun, runc and podman (issues "Containers", 11).

    sudo python3 bench/start_latency.py [--runs 50] [--passes 3] [--seccomp-profile PATH]

Same busybox-static rootfs, `/bin/true`, a 2-layer overlay (busybox + a
one-file layer) with an upper dir; --runs timed starts per runtime per pass
after 3 warm-ups, runtimes in blocks one after the other, best of --passes
(the pass with the lowest median: this VM has CPU-steal bursts). The ratio to
crun is over the same passes: the median of every sample of all passes, each
pass timing supd and then every peer back to back. What is timed:

- supd: from sending `POST /v1/units/t/start` (raw HTTP over the socket) until
  the event stream delivers the unit's `exited` event (`/bin/true` exited and
  was reaped; state `exited`, restart policy "no"). Covers the API, rootfs
  plan, 10 cgroup hierarchies, the spawner's fork/unshare/overlay/pivot_root,
  go, exec, exit, reap and scope removal. The `running` event (exec done) is
  shown as well. Where the supd under test has `[rootfs].userns`, the same
  unit with `userns = "auto"` (ids from the bench's own subuid/subgid files)
  is timed too, in the same passes;
- crun / runc: overlay mount + `<rt> run` (foreground: create, start, wait,
  delete of state and cgroups) + overlay umount, from a Python loop. Their
  config is `<rt> spec`'s (masked and read-only paths, no_new_privs) plus what
  podman adds and a default supd container does too (oci_defaults.py): the
  default seccomp filter (supd's own built-in rules where this supd has them),
  docker's device allow-list, podman's capability set. "crun (crun spec)" is
  crun on the bare `crun spec` config, without seccomp: the filter's cost;
- podman: `podman run --rm` of a 2-layer image (its own overlay storage).

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
from oci_defaults import default_seccomp  # noqa: E402
from peers import Peers, available  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from supd_instance import SupdInstance  # noqa: E402

from tests.helpers.busybox import make_busybox_rootfs  # noqa: E402

NAME = "start_latency"
WARMUPS = 3
SLEEPERS = 10
EVENT_TIMEOUT_S = 60.0
USERNS_FIRST_ID = 3_300_000  # far from any real user's ids
USERNS_IDS = 65536 * 4


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


def supports_userns() -> bool:
    """Whether the supd under test knows `[rootfs].userns` (issue 11, item 6)."""
    from supervisor.units import parse

    return "userns" in getattr(parse, "ROOTFS_KEYS", ())


def userns_args(work: Path) -> tuple[str, ...]:
    """supd flags giving userns units ids from files of the bench's own, never /etc's."""
    for name in ("subuid", "subgid"):
        (work / name).write_text(f"supd:{USERNS_FIRST_ID}:{USERNS_IDS}\n")
    return ("--subuid-file", str(work / "subuid"), "--subgid-file", str(work / "subgid"))


# The network rows (issue 12): the same unit on each [rootfs].network; "t",
# the row every earlier figure is about, stays on the host's network.
NETWORK_ROWS = {"supd (bridge)": "tb", "supd (none)": "tn"}
PODMAN_BRIDGE_ROW = "podman (bridge, CNI)"
BRIDGE_TO_RUNNING = "supd (bridge, to running)"
# the same conflist's plugins run ADD then DEL by a bare script: the floor of
# any CNI runtime's bridge start, which the ≤ 0.5 × podman target is held against
CNI_FLOOR_ROW = "CNI plugins alone (ADD+DEL)"


def write_units(units_dir: Path, layers: list[Path], userns: bool = False) -> None:
    units_dir.mkdir(parents=True, exist_ok=True)
    (units_dir / "t.toml").write_text(unit_text(layers, ["/bin/true"], "no", 'network = "host"\n'))
    (units_dir / "tb.toml").write_text(unit_text(layers, ["/bin/true"], "no", 'network = "bridge"\n'))
    (units_dir / "tn.toml").write_text(unit_text(layers, ["/bin/true"], "no", 'network = "none"\n'))
    if userns:
        (units_dir / "tu.toml").write_text(unit_text(layers, ["/bin/true"], "no", 'userns = "auto"\nnetwork = "host"\n'))
    for i in range(SLEEPERS):
        (units_dir / f"s{i}.toml").write_text(unit_text(layers, ["/bin/sleep", "100000"], "no", 'network = "host"\n'))


def wait_event(events: rawhttp.EventStream, unit: str, wanted: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while time.monotonic() < deadline:
        event = events.next()
        if event.get("unit") == unit and event.get("event") in wanted:
            return event
    raise TimeoutError(f"no {sorted(wanted)} event for {unit} within {EVENT_TIMEOUT_S:.0f} s")


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


BARE_CRUN = "crun (crun spec)"
USERNS_ROW = "supd (userns auto)"


def peer_commands(peers: Peers, image: str | None, seccomp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for name, rt, section in (("crun", "crun", seccomp), (BARE_CRUN, "crun", None), ("runc", "runc", seccomp)):
        if not available(rt):
            continue
        purpose = "true" if section is not None else "true-bare"
        ov = peers.overlay(f"{rt}-{purpose}")
        bundle = peers.bundle(rt, purpose, ["/bin/true"], ov["target"], seccomp=section)
        jobs[name] = {"kind": "latency", "overlay": ov,
                      "command": [*peers.runtime_argv(rt), "run", "--bundle", str(bundle), f"bench-{rt}-{purpose}-{{i}}"]}
    if image:
        jobs["podman"] = {"kind": "latency", "command": [*peers.podman_argv(), "run", "--rm", *peers.podman_run_flags(), image, "/bin/true"]}
        # podman 4.3 on its CNI backend, default network (bridge cni-podman0): the peer of supd's bridge
        flags = peers.podman_run_flags()
        flags[flags.index("--network") + 1] = "bridge"
        jobs[PODMAN_BRIDGE_ROW] = {"kind": "latency", "command": [
            *peers.podman_argv(), "--network-backend", "cni", "--network-config-dir", str(peers.podman_dir / "cni"),
            "run", "--rm", *flags, image, "/bin/true"]}
    return jobs


def resident_jobs(peers: Peers, image: str | None, seccomp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for rt in ("crun", "runc"):
        if not available(rt):
            continue
        ov = peers.overlay(rt + "-sleep")
        bundle = peers.bundle(rt, "sleep", ["/bin/sleep", "100001"], ov["target"], seccomp=seccomp)
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
    """Processes supd keeps outside a running container's cgroup (its log
    relays), per container as the peers' figures are (they run one), and
    supd's memory growth per container."""
    spawner = supd.spawner_pid()
    base = {supd.pid} | ({spawner} if spawner else set())
    before = sum(procfs.rss_kb(p) for p in base)
    for i in range(SLEEPERS):
        rawhttp.request_json(supd.socket, "POST", f"/v1/units/s{i}/start")
    time.sleep(1.0)
    pids = procfs.descendants(supd.pid)
    cgroups = {procfs.memory_cgroup(p) for p in pids if "sleep 100000" in " ".join(procfs.cmdline(p))}
    extra = [p for p in pids if p not in base and procfs.memory_cgroup(p) not in cgroups]
    # read while they run: a stopped unit's relay ends with it
    comms = sorted({procfs.comm(p).split(":")[0] for p in extra})
    rss = sum(procfs.rss_kb(p) for p in extra)
    pss = sum(procfs.pss_kb(p) or 0 for p in extra)
    after = sum(procfs.rss_kb(p) for p in base)
    for i in range(SLEEPERS):
        rawhttp.request_json(supd.socket, "POST", f"/v1/units/s{i}/stop")
    containers = max(len(cgroups), 1)
    return {"count": len(extra) / containers, "comms": comms, "rss_mb": rss / containers / 1024,
            "pss_mb": pss / containers / 1024, "containers": len(cgroups),
            "supd_rss_growth_per_container_kb": (after - before) / containers}


def bench_network(work: Path) -> Path:
    """The bench's own default network: a bridge, subnet and host-local store
    of its own, never the machine's supd0."""
    import random
    import subprocess

    from supervisor.network.conflist import default_conflist

    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    while True:
        prefix = f"10.{random.randint(128, 254)}.{random.randint(0, 255)}."
        if prefix not in routes:
            break
    bridge = f"sdbench{random.randint(0, 0xffff):04x}"
    (work / "bridge").write_text(bridge)
    # podman's CNI default network makes cni-podman0 and its host-local store:
    # removed at the end unless they were there before the bench
    (work / "podman-bridge-existed").write_text(str(Path("/sys/class/net/cni-podman0").exists()))
    (work / "podman-store-existed").write_text(str(Path("/var/lib/cni/networks/podman").exists()))
    path = work / "networks" / "supd.conflist"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(default_conflist("supd", bridge, prefix + "0/24", str(work / "cni-ipam")))
    return path


def remove_bench_network(work: Path) -> None:
    import subprocess

    import shlex

    marker = work / "bridge"
    if marker.exists():
        bridge = marker.read_text()
        rules = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
        for line in rules.splitlines():  # the firewall plugin's isolation rules for this bridge
            if line.startswith("-A CNI-ISOLATION-STAGE-") and f"-o {bridge} " in line:
                subprocess.run(["iptables", "-t", "filter", "-D", *shlex.split(line)[1:]], capture_output=True)
        subprocess.run(["ip", "link", "delete", bridge, "type", "bridge"], capture_output=True)
    if (work / "podman-bridge-existed").exists() and (work / "podman-bridge-existed").read_text() == "False":
        subprocess.run(["ip", "link", "delete", "cni-podman0", "type", "bridge"], capture_output=True)
    if (work / "podman-store-existed").exists() and (work / "podman-store-existed").read_text() == "False":
        import shutil

        shutil.rmtree("/var/lib/cni/networks/podman", ignore_errors=True)


def same_pass_ratio(samples: dict[str, list[list[float]]], name: str, base: str) -> tuple[float, list[float]] | None:
    """(median of all `name` samples / median of all `base` samples, and that
    ratio per pass): both timed in the same passes, one block after the other."""
    if not samples.get(base) or not samples.get(name):
        return None
    pooled = figures.summarize([t for p in samples[name] for t in p]).median
    pooled_base = figures.summarize([t for p in samples[base] for t in p]).median
    per_pass = [figures.summarize(a).median / figures.summarize(b).median for a, b in zip(samples[name], samples[base])]
    return pooled / pooled_base, per_pass


def run(runs: int = 50, passes: int = 3, seccomp_profile: Path | None = None) -> Table:
    notes: list[str] = []
    raw: dict[str, Any] = {"runs": runs, "passes": passes}
    seccomp, seccomp_source = default_seccomp(seccomp_profile)
    raw["peer_seccomp"] = {"source": seccomp_source, "rules": len(seccomp["syscalls"])}
    with scratch_dir(NAME) as work, scratch_dir("p") as podman_dir:
        layers = make_layers(work)
        userns = supports_userns()
        write_units(work / "units", layers, userns)
        peer_root = cgroup_cleanup.unique_root()
        peers = Peers(work / "peers", peer_root, layers, podman_dir)
        try:
            image = None
            if available("podman"):
                try:
                    image = peers.podman_image()
                except Exception as e:  # noqa: BLE001 - a broken peer must not hide the others' figures
                    notes.append(f"podman skipped: {e}")
            latency_jobs = peer_commands(peers, image, seccomp)
            samples: dict[str, list[list[float]]] = {"supd": [], "supd (to running)": []}
            samples.update({row: [] for row in NETWORK_ROWS})
            samples[BRIDGE_TO_RUNNING] = []
            if userns:
                samples[USERNS_ROW] = []
            samples.update({k: [] for k in latency_jobs})
            resident: dict[str, Any] = {}
            extra = userns_args(work) if userns else ()
            network = bench_network(work)
            extra = (*extra, "--networks-dir", str(network.parent))
            latency_jobs[CNI_FLOOR_ROW] = {"kind": "latency", "command": [
                sys.executable, "-I", "-S", str(Path(__file__).with_name("cni_chain.py")), str(network), "{i}"]}
            samples[CNI_FLOOR_ROW] = []
            with SupdInstance(work / "supd", units_dir=work / "units", extra_args=extra) as supd:
                supd.wait_ready()
                for _ in range(passes):
                    to_exit, to_running = supd_starts(supd, runs)
                    samples["supd"].append(to_exit)
                    samples["supd (to running)"].append(to_running)
                    for row, unit in NETWORK_ROWS.items():
                        to_exit, to_running = supd_starts(supd, runs, unit)
                        samples[row].append(to_exit)
                        if unit == "tb":
                            samples[BRIDGE_TO_RUNNING].append(to_running)
                    if userns:
                        samples[USERNS_ROW].append(supd_starts(supd, runs, "tu")[0])
                    for name, job in latency_jobs.items():
                        samples[name].append(peers.run_job({**job, "runs": runs}, env=peers.podman_env())["seconds"])
                resident["supd"] = supd_resident(supd)
            for name, job in resident_jobs(peers, image, seccomp).items():
                try:
                    resident[name] = outside(peers.run_job(job, env=peers.podman_env()))
                except Exception as e:  # noqa: BLE001
                    notes.append(f"{name} resident figure failed: {e}")
        finally:
            remove_bench_network(work)
            leaked = cgroup_cleanup.remove_root(peer_root)
            if leaked:
                notes.append(f"{len(leaked)} peer processes were left in {peer_root}; killed")
    best = {name: figures.best_pass(p) for name, p in samples.items()}
    pooled = {name: figures.summarize([t for p in ps for t in p]) for name, ps in samples.items()}
    ratios = {name: same_pass_ratio(samples, name, "crun") for name in samples}
    raw["samples_ms"] = {name: [[s * 1000 for s in p] for p in ps] for name, ps in samples.items()}
    raw["ratio_to_crun"] = {name: {"median_of_all_passes": r[0], "per_pass": r[1]} for name, r in ratios.items() if r}
    raw["resident"] = resident
    rows = []
    for name, s in pooled.items():
        res = resident.get(name.split(" ")[0]) if "(" not in name else None
        ratio = ratios[name]
        rows.append((name, s.median, s.p90, best[name].median, ratio[0] if ratio else None,
                     res["count"] if res else None, ", ".join(res["comms"]) if res else None,
                     res["rss_mb"] if res else None, res["pss_mb"] if res else None))
    if ratios.get("supd"):
        per_pass = ", ".join(f"{r:.2f}" for r in ratios["supd"][1])
        notes.append(f"supd / crun, median over the same {passes} passes: {ratios['supd'][0]:.2f} (target ≤ 1.2); per pass: {per_pass}")
    bridge_ratio = same_pass_ratio(samples, "supd (bridge)", PODMAN_BRIDGE_ROW)
    if bridge_ratio:
        raw["ratio_bridge_to_podman_bridge"] = {"median_of_all_passes": bridge_ratio[0], "per_pass": bridge_ratio[1]}
        per_pass = ", ".join(f"{r:.2f}" for r in bridge_ratio[1])
        notes.append(f"supd (bridge) / podman (bridge, CNI), same passes: {bridge_ratio[0]:.2f} (target ≤ 0.5); per pass: {per_pass}")
    floor_ratio = same_pass_ratio(samples, CNI_FLOOR_ROW, PODMAN_BRIDGE_ROW)
    if floor_ratio:
        raw["ratio_cni_floor_to_podman_bridge"] = {"median_of_all_passes": floor_ratio[0], "per_pass": floor_ratio[1]}
        notes.append(f"{CNI_FLOOR_ROW} / podman (bridge, CNI), same passes: {floor_ratio[0]:.2f}: "
                     "what the plugins alone cost of podman's start")
    for row in NETWORK_ROWS:
        r = same_pass_ratio(samples, row, "supd")
        if r:
            notes.append(f"{row} / supd (host network), same passes: {r[0]:.2f}")
    if not userns:
        notes.append("supd (userns auto): not measured, this supd has no [rootfs].userns")
    notes.append(f"crun's and runc's seccomp rules ({len(seccomp['syscalls'])}): {seccomp_source}; "
                 "with docker's device allow-list and podman's capabilities; masked paths from `crun spec`")
    if "supd" in resident:
        notes.append(f"supd: {resident['supd']['containers']} sleep containers added "
                     f"{resident['supd']['supd_rss_growth_per_container_kb']:.0f} KiB RSS per container to supd + spawner")
    notes.append(f"{passes} passes of {runs} starts after {WARMUPS} warm-ups; median and p90 over all passes, "
                 "and the median of the best pass, in ms; "
                 "'resident' = processes a running sleep container keeps outside its own cgroup")
    return Table(NAME, "Container start: busybox /bin/true on a 2-layer overlay",
                 ("runtime", "median ms", "p90 ms", "best pass ms", "× crun", "resident procs", "which",
                  "resident RSS MB", "resident PSS MB"),
                 tuple(rows), tuple(notes), raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--seccomp-profile", type=Path,
                        help="docker/OCI seccomp profile for crun and runc (default: supd's built-in, "
                             "else containers-common's)")
    args = parser.parse_args()
    print(figures.render_text(run(args.runs, args.passes, args.seccomp_profile)))


if __name__ == "__main__":
    main()
