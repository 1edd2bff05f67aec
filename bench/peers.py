"""crun, runc and podman, set up the way they were found to run on this hybrid
host, for side-by-side figures with supd.

- crun (and podman, which runs crun) refuses the hybrid layout while the cgroup2
  mount lists `hugetlb`: every peer command runs in a private mount namespace
  (`unshare -m`) with an empty file bound over that cgroup.controllers;
- every container's cgroup goes under the benchmark's unique `supdtest<hex>`
  root; runtimes keep their state under the benchmark's folder (`--root`);
- podman gets its own --root/--runroot/--tmpdir, the cgroupfs manager, file
  events and a containers.conf with nofile=1024 (root here lacks
  CAP_SYS_RESOURCE, so podman's default nofile cannot be set).
Containers share the host network (no network namespace), like a supd unit
without `network = "none"`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import oci  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oci_defaults  # noqa: E402

PEER_LOOP = Path(__file__).resolve().with_name("peer_loop.py")
# only a hybrid host has this file to hide; on pure cgroup v2 it is absent and crun is content
HYBRID_CONTROLLERS = Path("/sys/fs/cgroup/unified/cgroup.controllers")
NAMESPACES = ("pid", "ipc", "uts", "mount", "cgroup")  # what a supd container unshares (network: host)
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
"""


class PeerError(Exception):
    def __init__(self, what: str, message: str) -> None:
        super().__init__(f"{what}: {message}")
        self.what = what


def available(tool: str) -> bool:
    return any(os.access(Path(d) / tool, os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


class Peers:
    def __init__(self, work: Path, cgroup_root: str, layers: list[Path], podman_dir: Path | None = None) -> None:
        self.work = work
        # podman refuses a runroot longer than 50 characters
        self.podman_dir = podman_dir or work / "podman"
        self.cgroup_root = cgroup_root
        self.layers = layers
        self._jobs = 0
        work.mkdir(parents=True, exist_ok=True)

    # -- OCI runtimes (crun, runc) ------------------------------------------

    def overlay(self, name: str) -> dict[str, Any]:
        """Upper, work and mount point of one runtime's 2-layer overlay."""
        base = self.work / f"overlay-{name}"
        for d in ("upper", "work", "merged"):
            (base / d).mkdir(parents=True, exist_ok=True)
        return {"lowerdirs": [str(p) for p in self.layers], "upperdir": str(base / "upper"),
                "workdir": str(base / "work"), "target": str(base / "merged")}

    def bundle(
        self, runtime: str, purpose: str, args: list[str], rootfs: str, *, seccomp: dict[str, Any] | None = None
    ) -> Path:
        """An OCI bundle from `<runtime> spec`, running `args` on `rootfs`; with
        `seccomp` (an OCI section), also what podman adds: that filter, docker's
        device allow-list and podman's capabilities (oci_defaults.py)."""
        bundle = self.work / f"bundle-{runtime}-{purpose}"
        bundle.mkdir(parents=True, exist_ok=True)
        config_path = bundle / "config.json"
        config_path.unlink(missing_ok=True)
        subprocess.run([runtime, "spec"], cwd=bundle, check=True, capture_output=True)
        config = json.loads(config_path.read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        config["root"] = {"path": rootfs, "readonly": False}
        config["hostname"] = "bench"
        config["linux"]["namespaces"] = [{"type": t} for t in NAMESPACES]
        config["linux"]["cgroupsPath"] = f"/{self.cgroup_root}/{runtime}-{purpose}"
        if seccomp is not None:
            oci_defaults.harden(config, seccomp)
        config_path.write_text(json.dumps(config, indent=1))
        return bundle

    def runtime_argv(self, runtime: str) -> list[str]:
        return [runtime, "--root", str(self.work / f"state-{runtime}")]

    # -- podman -------------------------------------------------------------

    def podman_argv(self) -> list[str]:
        p = self.podman_dir
        return ["podman", "--root", str(p / "storage"), "--runroot", str(p / "run"), "--tmpdir", str(p / "tmp"),
                "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]

    def podman_env(self) -> dict[str, str]:
        conf = self.podman_dir / "containers.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF)
        return {**os.environ, "CONTAINERS_CONF": str(conf)}

    def podman_image(self) -> str:
        """A 2-layer image (busybox + one small layer) pulled from an OCI layout; its id."""
        layout, scratch = self.work / "oci", self.work / "oci-work"
        oci.new_busybox_base(layout, "base", scratch)
        oci.add_raw_layer(layout, "base", {"etc/": None, "etc/bench": b"second layer\n"}, scratch, new_tag="two")
        done = subprocess.run([*self.podman_argv(), "pull", "-q", f"oci:{layout}:two"], env=self.podman_env(),
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise PeerError("podman pull", done.stderr.strip()[-400:])
        return done.stdout.split()[-1]

    def podman_run_flags(self) -> list[str]:
        return ["--network", "host", "--cgroup-parent", f"/{self.cgroup_root}/podman", "--log-driver", "none"]

    # -- running a job in a private mount namespace -------------------------

    def run_job(self, job: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
        self._jobs += 1
        path = self.work / f"job-{self._jobs}.json"
        job = {"hide_controllers": HYBRID_CONTROLLERS.exists(), "empty_file": str(self.work / "empty"), "warmups": 3, **job}
        path.write_text(json.dumps(job))
        argv = ["unshare", "-m", "--propagation", "private", sys.executable, str(PEER_LOOP), str(path)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if done.returncode != 0:
            raise PeerError(f"{job['kind']} job {path}", done.stderr.strip()[-800:])
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
