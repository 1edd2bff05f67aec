"""Remove a benchmark's cgroup root from every hierarchy, depth-first.

Each benchmark puts everything it makes (supd's slices, crun/runc/podman
containers) under `/sys/fs/cgroup/<hierarchy>/supdtest<hex>`. A process still
in there at the end is a leak: it is reported, then ended by its pid.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")
PROCS_FILE = "cgroup.procs"
# Names the benchmarks (supdtest) and the soak (supdsoak) give their roots:
# remove_root refuses anything else, so it can never empty a real cgroup.
OWN_PREFIXES = ("supdtest", "supdsoak")


def unique_root() -> str:
    return f"supdtest{secrets.token_hex(5)}"


def hierarchies() -> list[Path]:
    seen: set[str] = set()
    found: list[Path] = []
    for entry in sorted(CGROUP_MOUNT.iterdir()):
        real = os.path.realpath(entry)
        if entry.is_dir() and real not in seen:
            seen.add(real)
            found.append(entry)
    if (CGROUP_MOUNT / PROCS_FILE).exists():  # pure cgroup2: the mount itself is the hierarchy
        found = [CGROUP_MOUNT]
    return found


def pids_under(root_name: str) -> set[int]:
    pids: set[int] = set()
    for h in hierarchies():
        top = h / root_name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top):
            try:
                pids |= {int(p) for p in Path(dirpath, PROCS_FILE).read_text().split()}
            except OSError:
                pass
    return pids


def remove_root(root_name: str, deadline_s: float = 30.0) -> list[int]:
    """Kill what is left (by pid), rmdir every cgroup bottom-up; the leaked pids."""
    if not root_name.startswith(OWN_PREFIXES):
        raise ValueError(f"remove_root: expected a name starting with one of {OWN_PREFIXES}, got {root_name!r}")
    leaked = sorted(pids_under(root_name))
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + deadline_s
    for h in hierarchies():
        top = h / root_name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            while True:
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # EBUSY while a killed process is still exiting
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
    return leaked
