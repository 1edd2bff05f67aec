"""Scratch folders that are safe to delete: anything still mounted below one is
detached first, so removing the folder can never reach into a mounted layer."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()).rstrip("/") + "/"
    points = []
    for line in MOUNTINFO.read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_all_under(root: Path) -> list[str]:
    left = mounts_under(root)
    for point in left:
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    return left


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    # only [a-z0-9-]: podman derives an image name from an OCI layout's path
    path = Path(tempfile.gettempdir()) / f"supd-bench-{prefix.replace('_', '-')}-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        left = unmount_all_under(path)
        if left:
            print(f"warning: {len(left)} mounts were left under {path}: {left[:3]}")
        if mounts_under(path):
            print(f"warning: could not unmount everything under {path}; leaving it in place")
        else:
            shutil.rmtree(path, ignore_errors=True)
