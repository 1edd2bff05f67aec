"""A self-contained supd for a benchmark: its own units, state and runtime
folders under a scratch dir, the cgroupfs driver under a unique cgroup root,
stopped with SIGTERM and its cgroups removed at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import cgroup_cleanup
import procfs
import rawhttp

REPO = Path(__file__).resolve().parent.parent
SHIM_NAME = "shim.py"
SOCKET_NAME = "supd.sock"


class SupdError(Exception):
    def __init__(self, log: Path, message: str) -> None:
        super().__init__(f"{message} (supd log: {log})")
        self.log = log


def repo_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)  # a bench run under systemd: supd must not notify for it
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


class SupdInstance:
    def __init__(self, work: Path, units_dir: Path | None = None, cgroup_root: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.work = work
        self.extra_args = extra_args  # more supd flags (e.g. --subuid-file for userns units)
        self.units_dir = units_dir or work / "units"
        self.state_dir = work / "state"
        self.runtime_dir = work / "runtime"
        self.log = work / "supd.log"
        self.cgroup_root = cgroup_root or cgroup_cleanup.unique_root()
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0
        self.leaked_pids: list[int] = []

    @property
    def socket(self) -> Path:
        return self.runtime_dir / SOCKET_NAME

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("supd is not running")
        return self.process.pid

    def launch(self, live_restore: bool = False) -> None:
        """Start supd. Without live restore (the benches' default) SIGTERM stops
        the units, so a stop's figure includes theirs."""
        self.units_dir.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "supervisor",
            "--units", str(self.units_dir), "--state-dir", str(self.state_dir),
            "--runtime-dir", str(self.runtime_dir), "--cgroup-driver", "cgroupfs",
            "--cgroup-root", "/" + self.cgroup_root, "--log-format", "json",
            "--live-restore" if live_restore else "--no-live-restore", *self.extra_args,
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.launched_at = time.monotonic()
            self.process = subprocess.Popen(argv, cwd=REPO, env=repo_env(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from launch until the API answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SupdError(self.log, f"supd exited with {self.process.returncode} before its socket answered")
            try:
                rawhttp.request(self.socket, "GET", "/v1/units", timeout=5)
                return time.monotonic() - self.launched_at
            except OSError:
                time.sleep(0.05)
        raise SupdError(self.log, f"supd's socket {self.socket} did not answer within {timeout:.0f} s")

    def spawner_pid(self) -> int | None:
        for child in procfs.children(self.pid):
            if any(arg.endswith(SHIM_NAME) for arg in procfs.cmdline(child)):
                return child
        return None

    def supctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "supervisor.cli.main", *args]
        return subprocess.run(argv, cwd=REPO, env=repo_env({"SUPD_SOCKET": str(self.socket)}),
                              capture_output=True, text=True, check=check, timeout=120)

    def stop(self, timeout: float = 180.0) -> float:
        """SIGTERM and wait; seconds it took. SIGKILL (by pid) if it never ends."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            raise SupdError(self.log, f"supd did not stop within {timeout:.0f} s of SIGTERM; killed") from None
        return time.monotonic() - started

    def __enter__(self) -> SupdInstance:
        self.launch()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.stop()
        finally:
            self.leaked_pids = cgroup_cleanup.remove_root(self.cgroup_root)
            if self.leaked_pids:
                print(f"warning: {len(self.leaked_pids)} processes were left in {self.cgroup_root}; killed", file=sys.stderr)
