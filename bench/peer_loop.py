"""Runs inside `unshare -m --propagation private` for peers.py: times crun,
runc and podman commands where the benchmark's mounts stay private.

    python3 bench/peer_loop.py JOB.json   → prints one JSON object

Job keys: `hide_controllers` (bind an empty file over the cgroup2 mount's
cgroup.controllers: crun refuses this hybrid layout while cgroup2 lists
hugetlb), `overlay` (lowerdirs lowest first, upperdir, workdir, target:
mounted and unmounted around every timed run; `overlay_persistent`: mounted
for the whole job), `kind`:
- `latency`: `command` run `warmups` + `runs` times; seconds per run.
- `resident`: `start` a detached container running `sleep`, then every
  process this helper inherits (it is a child subreaper) with its cgroup and
  memory; then `delete`.
- `freeze`: `start` a detached container of many processes, wait for
  `expect_pids` in it, time `pause` + `resume` `runs` times; `delete`.
`{i}` in any argument becomes the run number (unique container names).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procfs  # noqa: E402

CONTROLLERS_FILE = "/sys/fs/cgroup/unified/cgroup.controllers"
MS_BIND = 4096
PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)


class MountError(Exception):
    def __init__(self, target: str, what: str) -> None:
        err = ctypes.get_errno()
        super().__init__(f"{target}: {what}: {os.strerror(err)}")
        self.target = target


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                  data.encode() if data else None) != 0:
        raise MountError(target, f"mount {fstype or 'bind'} {data or source}")


def umount(target: str) -> None:
    if libc.umount2(target.encode(), 0) != 0:
        raise MountError(target, "umount")


def fill(args: list[str], i: int) -> list[str]:
    return [a.replace("{i}", str(i)) for a in args]


def run_quiet(args: list[str], timeout: float = 120) -> None:
    # stderr to a file, not a pipe: a detached container inherits it and a pipe
    # would never reach EOF while the container runs
    with tempfile.TemporaryFile() as err:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout)
        if done.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {err.read().decode(errors='replace')[-500:]}")


def overlay_data(ov: dict[str, Any]) -> str:
    return f"lowerdir={':'.join(reversed(ov['lowerdirs']))},upperdir={ov['upperdir']},workdir={ov['workdir']}"


def latency(job: dict[str, Any]) -> dict[str, Any]:
    ov = job.get("overlay")
    times = []
    for i in range(job["warmups"] + job["runs"]):
        t0 = time.perf_counter()
        if ov:
            mount("overlay", ov["target"], "overlay", 0, overlay_data(ov))
        try:
            run_quiet(fill(job["command"], i))
        finally:
            if ov:
                umount(ov["target"])
        if i >= job["warmups"]:
            times.append(time.perf_counter() - t0)
    return {"seconds": times}


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def container_pids(marker: str, cgroup: str | None = None) -> tuple[str | None, list[int]]:
    """(the container's memory cgroup, its processes among ours); the container is found by
    its pid 1's command line containing `marker`."""
    mine = procfs.descendants(os.getpid())
    if cgroup is None:
        for pid in mine:
            if marker in " ".join(procfs.cmdline(pid)):
                cgroup = procfs.memory_cgroup(pid)
                break
    if cgroup is None:
        return None, []
    return cgroup, [p for p in mine if procfs.memory_cgroup(p) == cgroup]


def wait_for(marker: str, count: int, deadline_s: float = 60) -> str:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        cgroup, pids = container_pids(marker)
        if cgroup is not None and len(pids) >= count:
            return cgroup
        time.sleep(0.05)
    raise TimeoutError(f"container with {marker!r} did not reach {count} processes in {deadline_s} s")


def resident(job: dict[str, Any]) -> dict[str, Any]:
    run_quiet(fill(job["start"], 0))
    try:
        cgroup = wait_for(job["marker"], 1)
        time.sleep(1.0)  # let a runtime's helpers settle (podman's conmon double-forks)
        reap()
        processes = []
        for pid in procfs.descendants(os.getpid()):
            processes.append({"pid": pid, "comm": procfs.comm(pid), "rss_kb": procfs.rss_kb(pid),
                              "pss_kb": procfs.pss_kb(pid), "inside": procfs.memory_cgroup(pid) == cgroup})
        return {"cgroup": cgroup, "processes": processes}
    finally:
        run_quiet(fill(job["delete"], 0))
        reap()


def freeze(job: dict[str, Any]) -> dict[str, Any]:
    run_quiet(fill(job["start"], 0))
    try:
        cgroup = wait_for(job["marker"], job["expect_pids"])
        times = []
        for i in range(job["warmups"] + job["runs"]):
            t0 = time.perf_counter()
            run_quiet(fill(job["pause"], i))
            run_quiet(fill(job["resume"], i))
            if i >= job["warmups"]:
                times.append(time.perf_counter() - t0)
        return {"seconds": times, "cgroup": cgroup, "pids": len(container_pids(job["marker"], cgroup)[1])}
    finally:
        run_quiet(fill(job["delete"], 0))
        reap()


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if job.get("hide_controllers"):
        empty = Path(job["empty_file"])
        empty.write_text("")
        mount(str(empty), CONTROLLERS_FILE, None, MS_BIND, None)
    held = job.get("overlay_persistent")  # a detached container's root, mounted for the whole job
    if held:
        mount("overlay", held["target"], "overlay", 0, overlay_data(held))
    try:
        result = {"latency": latency, "resident": resident, "freeze": freeze}[job["kind"]](job)
    finally:
        if held:
            umount(held["target"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
