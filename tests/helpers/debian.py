"""A real Debian root filesystem, made by mmdebstrap, for tests that run real
services (redis, nginx) inside supd containers.

Built once per package list and kept in /var/tmp/supd-test-debian/<key>
(keyed by suite and packages), so reruns on one machine cost nothing; a
fresh machine (CI) pays one build of a minute or two. The folder is only ever
used as a read-only lower layer: tests never write into it.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.vm.image import debian_mirrors

CACHE = Path("/var/tmp/supd-test-debian")
SUITE = "bookworm"


def debian_rootfs(packages: tuple[str, ...]) -> Path:
    """The cached rootfs with `packages` installed (built when missing)."""
    key = hashlib.sha256(f"{SUITE} {' '.join(sorted(packages))}".encode()).hexdigest()[:16]
    root = CACHE / key
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".complete").exists():
            return root
        if shutil.which("mmdebstrap") is None:
            raise RuntimeError("mmdebstrap is missing (make test installs it)")
        building = root.with_name(key + ".building")
        shutil.rmtree(building, ignore_errors=True)
        mirror, security = debian_mirrors()
        subprocess.run(
            [
                "mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", f"--include={','.join(packages)}",
                '--aptopt=Acquire::Languages "none"',
                "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
                SUITE, str(building),
                f"deb {mirror} {SUITE} main", f"deb {security} {SUITE}-security main",
            ],
            check=True,
            timeout=1200,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
        (root / ".complete").touch()
    return root
