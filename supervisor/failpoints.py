"""Failpoints: named places in supd's real code paths that a test can make
fail or stall, after containerd's internal/failpoint.

Armed by one environment variable, read once when supd starts
(`arm_from_env`; a malformed value stops supd with a clear message):

    SUPD_FAILPOINTS="driver.create=raise;rootfs.mount=delay(2s);state.save=2*panic"

Each entry is `NAME[@UNIT]=[COUNT*]ACTION`; `@UNIT` narrows a point to one
unit (`driver.create@web=raise`: only web's starts fail), and wins over the
plain name. `raise` (an OSError, EIO, the kind of
error the kernel gives), `panic` (a RuntimeError: an unexpected bug),
`delay(DURATION)`, or `off`. `COUNT*` limits how many times it fires (then it
is off). Unknown names are kept (and never fire): the list of points is
`POINTS` below. With the variable unset, `hit()` is one dict lookup on an
empty dict and `ahit()` one more await.

Points: driver.create, driver.update, driver.kill, driver.remove (the
cgroup driver, whichever it is), rootfs.mount (preparing a unit's root
filesystem), spawn (handing a spec to the spawner), state.save (writing a
unit record), state.launch (the record written just before a process may
exec), log.rotate (log rotation), inotify.setup (the units folder
watch), store.trash (an image store dir moved into the trash, not yet
deleted: `supctl image rm` and `prune`).
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from typing import Final

import anyio

ENV: Final = "SUPD_FAILPOINTS"
POINTS: Final = (
    "driver.create", "driver.update", "driver.kill", "driver.remove", "rootfs.mount", "spawn", "state.save",
    "state.launch", "log.rotate", "inotify.setup", "store.trash",
)  # fmt: skip

_ENTRY = re.compile(r"^(?:(\d+)\*)?(raise|panic|off|delay\((\d+(?:\.\d+)?)(ms|s)?\))$")


class FailpointError(OSError):
    """What an armed `raise` failpoint raises."""

    def __init__(self, name: str) -> None:
        super().__init__(errno.EIO, f"failpoint {name}")


class FailpointSpecError(ValueError):
    pass


@dataclass
class Failpoint:
    action: str  # raise | panic | delay | off
    delay: float = 0.0
    remaining: int | None = None  # None: every time

    def fire(self) -> str:
        """The action to take now (and count it)."""
        if self.action == "off" or self.remaining == 0:
            return "off"
        if self.remaining is not None:
            self.remaining -= 1
        return self.action


def parse(text: str) -> dict[str, Failpoint]:
    points: dict[str, Failpoint] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        name, sep, spec = entry.partition("=")
        m = _ENTRY.match(spec.strip())
        if not sep or not name.strip() or m is None:
            raise FailpointSpecError(
                f"{ENV}: {entry!r}: expected NAME[@UNIT]=[COUNT*]raise|panic|off|delay(N[ms|s]), e.g. driver.create=1*raise"
            )
        count, action, amount, unit = m.groups()
        delay = 0.0
        if action.startswith("delay"):
            delay = float(amount) / (1000.0 if unit == "ms" else 1.0)
            action = "delay"
        points[name.strip()] = Failpoint(action, delay, int(count) if count else None)
    return points


_armed: dict[str, Failpoint] = {}


def arm(text: str) -> None:
    """Replace the armed set."""
    global _armed
    _armed = parse(text)


def arm_from_env() -> None:
    arm(os.environ.get(ENV, ""))


def _fault(name: str, unit: str | None) -> tuple[str, float]:
    point = _armed.get(f"{name}@{unit}") if unit is not None else None
    if point is None:
        point = _armed.get(name)
    if point is None:
        return "off", 0.0
    return point.fire(), point.delay


def _raise(name: str, action: str) -> None:
    if action == "raise":
        raise FailpointError(name)
    if action == "panic":
        raise RuntimeError(f"failpoint {name} (panic)")


def hit(name: str, unit: str | None = None) -> None:
    """A failpoint in blocking code (worker threads): raise or sleep as armed."""
    if not _armed:
        return
    action, delay = _fault(name, unit)
    if action == "delay":
        time.sleep(delay)
    _raise(name, action)


async def ahit(name: str, unit: str | None = None) -> None:
    """A failpoint in async code."""
    if not _armed:
        return
    action, delay = _fault(name, unit)
    if action == "delay":
        await anyio.sleep(delay)
    _raise(name, action)
