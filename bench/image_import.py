"""Image import (issue 13, fast import): `supctl image import` against
`podman load` and `skopeo copy` into containers-storage, side by side in one
run, on the same real image, plus supd's API latency during an import.

The image: a Debian bookworm rootfs with redis and nginx (mmdebstrap, the
tests' cached build), made into a two-layer OCI layout with umoci (the rootfs
without /usr/lib, then /usr/lib) and an oci-archive of it (skopeo); both are
cached under /var/tmp/supd-bench-image. podman and skopeo get a throwaway
storage root and runroot in the run's scratch dir, never the machine's own.

    python3 bench/image_import.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rawhttp  # noqa: E402
from figures import Table, render_text  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from supd_instance import SupdInstance  # noqa: E402

from tests.helpers.debian import debian_rootfs  # noqa: E402

NAME = "image_import"
PACKAGES = ("redis-server", "redis-tools", "nginx-light")
CACHE = Path("/var/tmp/supd-bench-image")
TAG = "img"
SPLIT = "usr/lib"  # the second layer


def built_image() -> tuple[Path, Path]:
    """(OCI layout, oci-archive) of the two-layer image, built once per machine."""
    layout, archive = CACHE / "layout", CACHE / "img.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (CACHE / ".complete").exists():
            return layout, archive
        rootfs = debian_rootfs(PACKAGES)
        for stale in (layout, archive, CACHE / "bundle", CACHE / "second"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        bundle, rootfs_copy = CACHE / "bundle", CACHE / "bundle" / "rootfs"

        def run(*argv: str) -> None:
            subprocess.run(argv, check=True)

        run("umoci", "init", "--layout", str(layout))
        run("umoci", "new", "--image", f"{layout}:{TAG}")
        run("umoci", "unpack", "--image", f"{layout}:{TAG}", str(bundle))
        run("cp", "-a", f"{rootfs}/.", str(rootfs_copy))
        (rootfs_copy / ".complete").unlink(missing_ok=True)
        (rootfs_copy / SPLIT).rename(CACHE / "second")
        run("umoci", "repack", "--image", f"{layout}:{TAG}", str(bundle))
        shutil.rmtree(bundle)
        run("umoci", "unpack", "--image", f"{layout}:{TAG}", str(bundle))
        (CACHE / "second").rename(rootfs_copy / SPLIT)
        run("umoci", "repack", "--image", f"{layout}:{TAG}", str(bundle))
        shutil.rmtree(bundle)
        run("umoci", "gc", "--layout", str(layout))
        run("skopeo", "copy", "-q", f"oci:{layout}:{TAG}", f"oci-archive:{archive}:{TAG}")
        (CACHE / ".complete").touch()
    return layout, archive


def layer_sizes(layout: Path) -> list[int]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [int(layer["size"]) for layer in manifest["layers"]]


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.monotonic() - started


def list_latency(supd: SupdInstance, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.monotonic()
        rawhttp.request(supd.socket, "GET", "/v1/units", timeout=30)
        samples.append(time.monotonic() - started)
    return samples


def supctl_list_latency(supd: SupdInstance, n: int) -> list[float]:
    """Whole `supctl list` processes (what a user waits for)."""
    samples = []
    for _ in range(n):
        started = time.monotonic()
        supd.supctl("list")
        samples.append(time.monotonic() - started)
    return samples


def supd_import(supd: SupdInstance, layout: Path, sample_latency: bool) -> tuple[float, list[float], list[float]]:
    """Seconds for `supctl image import`, and (when asked: the sampling costs
    CPU the import would have had) GET /v1/units and `supctl list` latencies
    sampled back to back while it ran; then `image rm` so the next round
    starts empty."""
    raw: list[float] = []
    ctl: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            raw.extend(list_latency(supd, 1))
            ctl.extend(supctl_list_latency(supd, 1))

    sampler = threading.Thread(target=sample)
    if sample_latency:
        sampler.start()
    try:
        started = time.monotonic()
        supd.supctl("image", "import", f"{layout}:{TAG}")
        seconds = time.monotonic() - started
    finally:
        done.set()
        if sample_latency:
            sampler.join()
    supd.supctl("image", "rm", f"{layout}:{TAG}")
    return seconds, raw, ctl


def podman_load(work: Path, archive: Path) -> float:
    root, runroot = work / "podman-root", work / "podman-run"
    try:
        return timed(["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "overlay",
                      "load", "-q", "-i", str(archive)])  # fmt: skip
    finally:
        subprocess.run(["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "overlay",
                        "system", "reset", "-f"], capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)


def skopeo_copy(work: Path, layout: Path) -> float:
    root, runroot = work / "skopeo-root", work / "skopeo-run"
    try:
        return timed(["skopeo", "copy", "-q", f"oci:{layout}:{TAG}",
                      f"containers-storage:[overlay@{root}+{runroot}]bench/img:latest"])  # fmt: skip
    finally:
        subprocess.run(["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "overlay",
                        "system", "reset", "-f"], capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)


def run(rounds: int = 3) -> Table:
    layout, archive = built_image()
    supd_s: list[float] = []
    podman_s: list[float] = []
    skopeo_s: list[float] = []
    during: list[float] = []
    ctl_during: list[float] = []
    with scratch_dir("image-import") as work:
        with SupdInstance(work / "supd") as supd:
            supd.wait_ready()
            idle = list_latency(supd, 20)
            ctl_idle = supctl_list_latency(supd, 10)
            for _ in range(rounds):  # round-robin: the VM's noise hits everyone alike
                supd_s.append(supd_import(supd, layout, sample_latency=False)[0])
                podman_s.append(podman_load(work, archive))
                skopeo_s.append(skopeo_copy(work, layout))
            # one more import, timed apart, with the API sampled while it runs
            sampled_s, during, ctl_during = supd_import(supd, layout, sample_latency=True)
    med = statistics.median
    rows = (
        ("supctl image import", med(supd_s), min(supd_s), 1.0, med(supd_s) / med(podman_s)),
        ("podman load (oci-archive)", med(podman_s), min(podman_s), med(podman_s) / med(supd_s), 1.0),
        ("skopeo copy → containers-storage", med(skopeo_s), min(skopeo_s), med(skopeo_s) / med(supd_s),
         med(skopeo_s) / med(podman_s)),
    )  # fmt: skip
    sizes = layer_sizes(layout)
    notes = (
        f"image: {len(sizes)} gzip layers, {sum(sizes) / 1e6:.0f} MB compressed ({', '.join(f'{s / 1e6:.0f}' for s in sizes)} MB)",
        f"{rounds} rounds, round-robin; median and min seconds",
        f"GET /v1/units while idle: median {med(idle) * 1000:.1f} ms; during imports: median "
        f"{med(during) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms over {len(during)} samples "
        f"({med(during) / med(idle):.2f}× idle)",
        f"supctl list while idle: median {med(ctl_idle) * 1000:.0f} ms; during imports: median "
        f"{med(ctl_during) * 1000:.0f} ms, max {max(ctl_during) * 1000:.0f} ms over {len(ctl_during)} runs "
        f"({med(ctl_during) / med(ctl_idle):.2f}× idle); that import took {sampled_s:.1f} s",
    )
    return Table(
        NAME, "Image import: supd vs podman load vs skopeo copy",
        ("importer", "median s", "min s", "× supd", "× podman load"), rows, notes,
        {"supd": supd_s, "podman": podman_s, "skopeo": skopeo_s, "idle": idle, "during": during,
         "supctl_idle": ctl_idle, "supctl_during": ctl_during, "layers": sizes},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(render_text(run(args.rounds)))


if __name__ == "__main__":
    main()
