"""A throwaway cgroup for tests that need one controller, on any layout.

On v1 it is `/sys/fs/cgroup/<controller>/<name>`; on pure v2 it is
`/sys/fs/cgroup/<name>`, with the controller enabled in the mount root's
`cgroup.subtree_control` first (a systemd host hands out only what it uses,
often just memory and pids). Every process left in it is killed by pid and
the directory removed on exit.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import TracebackType

import pytest

from supervisor.cgroups.driver import UNIFIED, CgroupRef
from supervisor.cgroups.layout import LayoutKind
from tests.layouts import describe_host, host_layout

REMOVE_DEADLINE = 15.0


class ThrowawayCgroup:
    """`with ThrowawayCgroup(name, "memory") as cg:` — cg.path, cg.limit_memory(),
    cg.add(pid), cg.ref(). Skips the test when the controller is not there."""

    def __init__(self, name: str, controller: str) -> None:
        self.name = name
        self.controller = controller
        layout = host_layout()
        self.unified = layout.kind is LayoutKind.UNIFIED
        if self.unified:
            assert layout.unified is not None
            self.mount = layout.unified.mount
        else:
            hierarchy = layout.v1_for(controller)
            if hierarchy is None:
                pytest.skip(f"no {controller} controller on this host ({describe_host()})")
            self.mount = hierarchy.mount
        self.path = self.mount / name

    def __enter__(self) -> ThrowawayCgroup:
        if self.unified:
            available = (self.mount / "cgroup.controllers").read_text().split()
            if self.controller not in available:
                pytest.skip(f"cgroup2 here has no {self.controller} controller ({describe_host()})")
            if self.controller not in (self.mount / "cgroup.subtree_control").read_text().split():
                (self.mount / "cgroup.subtree_control").write_text("+" + self.controller)
        self.path.mkdir()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        deadline = time.monotonic() + REMOVE_DEADLINE
        while True:
            for pid in self.procs():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # the kernel empties it a moment after the kill

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def procs(self) -> list[int]:
        try:
            return [int(p) for p in self.procs_file.read_text().split()]
        except FileNotFoundError:
            return []

    def add(self, pid: int) -> None:
        self.procs_file.write_text(str(pid))

    def limit_memory(self, limit: int) -> None:
        name = "memory.max" if self.unified else "memory.limit_in_bytes"
        (self.path / name).write_text(str(limit))

    def memory_usage(self) -> int:
        name = "memory.current" if self.unified else "memory.usage_in_bytes"
        return int((self.path / name).read_text())

    def ref(self, unit: str = "t") -> CgroupRef:
        key = UNIFIED if self.unified else self.controller
        return CgroupRef(unit=unit, scope=self.name, slice="supd.slice", paths=((key, self.path),), driver="cgroupfs")
