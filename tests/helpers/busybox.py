"""Build small root filesystems from Debian's busybox-static for tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
wheel:x:10:app
nogroup:x:65534:
app:x:1000:
"""


def busybox_applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True)
    return out.stdout.split()


def make_busybox_rootfs(root: Path) -> Path:
    """A minimal, runnable root: /bin/busybox plus one symlink per applet,
    /etc/passwd and /etc/group with root, nobody and app (1000), and the empty
    mount points a container needs (/proc, /sys, /dev, /tmp)."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} missing: apt-get install busybox-static")
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in busybox_applets():
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            os.symlink("busybox", link)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "home/app", "www", "usr/bin", "sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "etc" / "hostname").write_text("busybox\n")
    return root
