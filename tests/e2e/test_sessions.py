"""issue 10, "sessions end with their clients": an exec whose client goes
away is hung up on, and its whole process group killed after the grace
period. Real supd, real supctl."""

from __future__ import annotations

import signal
import subprocess
import sys

from supervisor.api.server import EXEC_HANGUP_GRACE
from tests.e2e.conftest import REPO, Supd, pid_alive, wait_for
from tests.e2e.test_live_restore import SLEEPER


def exec_pids(supd: Supd, unit: str, marker: str) -> list[int]:
    return [p["pid"] for p in supd.status(unit)["processes"] if marker in p["cmdline"]]


def test_an_exec_ignoring_sighup_ends_when_its_client_is_killed(supd: Supd) -> None:
    # before: SIGHUP then SIGKILL to the relay only; a command ignoring SIGHUP
    # kept running, reparented to supd
    supd.write_unit("host", SLEEPER)
    supd.start()
    main_pid = supd.wait_state("host", "running")["pid"]
    client = subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli.main", "exec", "host", "--",
         "/bin/sh", "-c", "trap '' HUP; exec /bin/sleep 4242"],
        env=supd.env(), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        (pid,) = wait_for(lambda: exec_pids(supd, "host", "4242"), what="the exec'd command in the unit")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    # the grace period, then SIGKILL to the group
    wait_for(lambda: not pid_alive(pid), timeout=EXEC_HANGUP_GRACE + 15, what=f"exec'd pid {pid} to end")
    assert not exec_pids(supd, "host", "4242")
    assert supd.status("host")["pid"] == main_pid and pid_alive(main_pid)  # the unit is untouched
    assert "api_exec_client_gone" in supd.daemon_log()
