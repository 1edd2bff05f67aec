"""Per-unit output capture: where a unit's stdout and stderr go (its driver),
and the run markers supd writes there.

Drivers:
- `file`: `state_dir/logs/<unit>.log`, one timestamped record per line
  (supervisor/logformat.py). supd opens the file and hands it to the spawner
  with the start; the spawner's log relay (runtime/shim.py) holds the
  process's stdout and stderr pipes and writes the records, so output keeps
  flowing while supd itself restarts. Rotation is "copytruncate": the content
  is copied to `<unit>.log.1` and the file truncated in place; the relay's
  O_APPEND descriptor continues at the new end.
- `journald`: the same relay writes native journal protocol entries to
  journald's socket, with SYSLOG_IDENTIFIER= and SUPD_UNIT= the unit's name.

Markers (`-- started pid 123 --`, `-- exited: exit 1 --`) are written by supd
itself, with the stream `supd`, between one run's lines and the next's.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import structlog

from supervisor import logformat

log = structlog.get_logger()

LOG_MODE = 0o640
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# sd_booted()'s test: systemd is PID 1 when this folder exists
SYSTEMD_RUNTIME = Path("/run/systemd/system")
DRIVERS = ("file", "journald")


def default_driver(configured: str, journal_socket: Path = JOURNAL_SOCKET, systemd_dir: Path = SYSTEMD_RUNTIME) -> str:
    """supd.toml's `log_driver`, with `auto` decided for this host."""
    if configured != "auto":
        return configured
    return "journald" if systemd_dir.is_dir() and journal_socket.exists() else "file"


def driver_of(unit_driver: str | None, default: str) -> str:
    return unit_driver or default


def open_sink(state_dir: Path, unit: str, driver: str, journal_socket: Path = JOURNAL_SOCKET) -> int:
    """The descriptor the unit's log relay writes to. OSError if it cannot be had."""
    if driver == "file":
        return open_for_unit(state_dir, unit)
    return _journal_socket(journal_socket).detach()


def _journal_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(path))
    except OSError as e:
        sock.close()
        raise OSError(
            e.errno, f"cannot reach journald's socket {path} ({e.strerror}): is systemd-journald running? "
            '(log_driver = "file" keeps the output in supd\'s state folder)'
        ) from None
    return sock


def journal_entry(unit: str, message: str, stream: str = "supd", priority: int = 5) -> bytes:
    """One native-protocol journal entry (values without newlines)."""
    fields = (
        f"PRIORITY={priority}",
        f"SYSLOG_IDENTIFIER={unit}",
        f"SUPD_UNIT={unit}",
        f"SUPD_STREAM={stream}",
        "MESSAGE=" + message.replace("\n", " "),
    )
    return ("\n".join(fields) + "\n").encode()


def write_marker(state_dir: Path, unit: str, driver: str, text: str, journal_socket: Path = JOURNAL_SOCKET) -> None:
    """Append a run marker; a failure is logged, never raised (output is the unit's, not ours)."""
    try:
        if driver == "file":
            fd = open_for_unit(state_dir, unit)
            try:
                os.write(fd, logformat.marker(time.time_ns(), text))
            finally:
                os.close(fd)
        else:
            with _journal_socket(journal_socket) as sock:
                sock.send(journal_entry(unit, f"-- {text} --"))
    except OSError as e:
        log.warning("log_marker_not_written", unit=unit, driver=driver, error=str(e))


def started_text(pid: int) -> str:
    return f"started pid {pid}"


def exited_text(reason: str) -> str:
    """`reason` as the lifecycle has it: "exit 1", "signal SIGKILL", "oom-kill"."""
    return f"exited: {reason}"


def log_path(state_dir: Path, unit: str) -> Path:
    return state_dir / "logs" / f"{unit}.log"


def open_for_unit(state_dir: Path, unit: str) -> int:
    path = log_path(state_dir, unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)


def rotate_if_needed(path: Path, max_bytes: int, keep: int) -> bool:
    """Rotate `path` when it has grown past `max_bytes`. Returns True if it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True
