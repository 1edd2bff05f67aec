"""Prepare what the example units in units/ need on this machine.

Builds a busybox root filesystem (Debian's busybox-static) into
examples/rootfs/busybox, the read-only layer the container examples use.
Idempotent: run by `make run` every time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOTFS = HERE / "rootfs" / "busybox"
BUSYBOX = Path("/bin/busybox")


def build_busybox_rootfs(root: Path) -> None:
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, tmp / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", tmp / "bin" / applet)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "www", "var/log", "sbin", "usr/bin"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    (tmp / "tmp").chmod(0o1777)
    (tmp / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (tmp / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    shutil.rmtree(root, ignore_errors=True)
    os.rename(tmp, root)


def main() -> int:
    if not BUSYBOX.exists():
        print("examples: /bin/busybox is missing: apt-get install busybox-static", file=sys.stderr)
        return 1
    if not (ROOTFS / "bin" / "busybox").exists():
        ROOTFS.parent.mkdir(parents=True, exist_ok=True)
        build_busybox_rootfs(ROOTFS)
        print(f"examples: built {ROOTFS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
