"""`make run`: prepare the examples, then become supd (in the foreground),
with a short banner printed once supd says it is ready.

    python examples/run.py SUPD [SUPD_ARGS...]

The banner waits for supd's own ready notification (sd_notify's READY=1, the
one systemd waits for with Type=notify): a small listener process, in a
session of its own (so Ctrl-C reaches supd only), receives supd's
notifications on .run/notify-<pid>.sock until supd exits. This process then execs
supd, which keeps its pid, its terminal and its signals.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prepare  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# one per supd: a second `make run` (refused by the first's cgroup root lock)
# must not take the first one's socket away
NOTIFY_SOCKET = REPO / ".run" / f"notify-{os.getpid()}.sock"
BANNER = """\
supd is running on units/; in another terminal:
    supctl list
    supctl status web
    curl http://127.0.0.1:8080/
    supctl logs -f hello
Ctrl-C stops supd; its units keep running (live-restore) and the next `make run` adopts them.
"""


def listen(sock: socket.socket, supd_pid: int) -> None:
    """Print the banner at supd's first READY=1; drain its notifications
    (RELOADING, STATUS, STOPPING...) until it exits, so none is undelivered."""
    os.setsid()  # not in the terminal's foreground group: Ctrl-C is for supd
    pidfd = os.pidfd_open(supd_pid)
    shown = False
    while True:
        readable, _, _ = select.select([sock, pidfd], [], [])
        if pidfd in readable:
            return
        message = sock.recv(4096).decode(errors="replace").splitlines()
        if "READY=1" in message and not shown:
            shown = True
            sys.stdout.write("\n" + BANNER)
            sys.stdout.flush()


def start_listener(supd_pid: int) -> None:
    """Bind the socket here (supd may notify as soon as it runs), then hand
    it to a grandchild: reparented away from supd, it is never supd's child."""
    NOTIFY_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    NOTIFY_SOCKET.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(NOTIFY_SOCKET))
    child = os.fork()
    if child == 0:
        try:
            if os.fork() == 0:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    listen(sock, supd_pid)
                finally:
                    NOTIFY_SOCKET.unlink(missing_ok=True)
                    os._exit(0)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    sock.close()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: run.py SUPD [SUPD_ARGS...]", file=sys.stderr)
        return 2
    status = prepare.main()
    if status != 0:
        return status
    start_listener(os.getpid())
    env = dict(os.environ, NOTIFY_SOCKET=str(NOTIFY_SOCKET))
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
