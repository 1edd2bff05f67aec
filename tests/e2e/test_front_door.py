"""`make run`'s helper (examples/run.py): the banner appears once, when the
daemon it execs says READY=1 over sd_notify, and its listener goes away with
the daemon without leaving its socket. The daemon here is a stand-in that
speaks the protocol as supd does (tests/e2e has the real supd; what is under
test is the helper)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FAKE_SUPD = """
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
print("daemon pid", os.getpid(), flush=True)
time.sleep(0.2)
s.sendto(b"READY=1\\nSTATUS=4 units", os.environ["NOTIFY_SOCKET"])
s.sendto(b"RELOADING=1", os.environ["NOTIFY_SOCKET"])
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])  # after a reload: no second banner
time.sleep(0.3)
s.sendto(b"STOPPING=1", os.environ["NOTIFY_SOCKET"])  # delivered: the listener is still there
time.sleep(0.2)
"""


def test_the_banner_shows_once_at_ready_and_the_listener_leaves_with_the_daemon(tmp_path: Path) -> None:
    fake = tmp_path / "supd"
    fake.write_text(f"#!{sys.executable}\n{FAKE_SUPD}")
    fake.chmod(0o755)
    done = subprocess.run([sys.executable, str(REPO / "examples" / "run.py"), str(fake)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # the daemon kept run.py's pid (exec); the examples' own lines come first
    # when their rootfs is built (a fresh checkout)
    pid = int(next(line for line in lines if line.startswith("daemon pid")).split()[-1])
    assert done.stdout.count("supd is running") == 1, done.stdout
    assert "    supctl list" in lines
    assert not (REPO / ".run" / f"notify-{pid}.sock").exists()
