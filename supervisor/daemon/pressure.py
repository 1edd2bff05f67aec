"""Host pressure (PSI): triggers that wake the daemon, and avg10 readings.

A PSI trigger (Documentation/accounting/psi.rst) is a write of
`some <stall us> <window us>` to /proc/pressure/<resource>; the kernel then
reports POLLPRI on that fd when the tasks stalled that long within the
window. Without CAP_SYS_RESOURCE only windows that are a multiple of 2 s are
accepted, so supd always uses a 2 s window.

PSI's poll handler always reports the fd readable and adds POLLPRI only for an
event, so the fd is put in its own epoll set with EPOLLPRI alone; that epoll
fd becomes readable exactly when the trigger fires, which is what the event
loop can wait on. A new trigger can fire once for stall accounted before it
was set (the kernel's trigger clock is stale while no trigger is active), so a
wake-up means "read avg10 now", never "pressure is high".
"""

from __future__ import annotations

import os
import select
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import anyio

PRESSURE_DIR: Final = Path("/proc/pressure")
RESOURCES: Final = ("memory", "cpu", "io")
# Unprivileged triggers need a window that is a multiple of 2 s.
WINDOW_US: Final = 2_000_000
SOME: Final = "some"
AVG10: Final = "avg10"


class PressureError(Exception):
    """A PSI file could not be read, or a trigger not set; carries the path and data."""

    def __init__(self, path: Path | str, data: str | None, reason: str) -> None:
        self.path = str(path)
        self.data = data
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" + ("" if data is None else f" (data: {data!r})"))


def parse_pressure(text: str) -> dict[str, dict[str, float]]:
    """`some avg10=1.00 avg60=... total=N` lines → {"some": {"avg10": 1.0, ...}}."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if not kind:
            continue
        fields: dict[str, float] = {}
        for item in rest.split():
            key, _, value = item.partition("=")
            fields[key] = float(value)
        out[kind] = fields
    return out


def some_avg10(text: str, path: Path | str = "<pressure>") -> float:
    try:
        return parse_pressure(text)[SOME][AVG10]
    except (KeyError, ValueError) as e:
        raise PressureError(path, text, f'expected a "some avg10=<percent>" line: {e!r}') from e


def trigger_line(threshold_percent: float, window_us: int = WINDOW_US) -> str:
    """The trigger for "some tasks stalled `threshold_percent` of the window"."""
    if not 0 < threshold_percent <= 100:
        raise ValueError(f"expected a threshold in (0, 100], got {threshold_percent}")
    stall_us = round(window_us * threshold_percent / 100)
    # The kernel wants 0 < stall < window.
    stall_us = min(max(stall_us, 1), window_us - 1)
    return f"{SOME} {stall_us} {window_us}"


def trigger_thresholds(units_thresholds: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per resource, the lowest threshold any unit asks for: one trigger wakes
    the daemon early enough for every unit."""
    lowest: dict[str, float] = {}
    for thresholds in units_thresholds.values():
        for resource, value in thresholds.items():
            lowest[resource] = min(value, lowest.get(resource, value))
    return lowest


class HostPressure:
    """Reads /proc/pressure/<resource> (a different root for tests)."""

    def __init__(self, root: Path = PRESSURE_DIR) -> None:
        self.root = root

    def available(self, resource: str) -> bool:
        return (self.root / resource).exists()

    def avg10(self, resource: str) -> float:
        path = self.root / resource
        try:
            text = path.read_text()
        except OSError as e:
            raise PressureError(path, None, f"cannot read: {e.strerror}") from e
        return some_avg10(text, path)

    def readings(self, resources: list[str] | tuple[str, ...]) -> dict[str, float]:
        """avg10 of each resource that can be read (missing ones are left out)."""
        out: dict[str, float] = {}
        for resource in resources:
            try:
                out[resource] = self.avg10(resource)
            except PressureError:
                continue
        return out

    def trigger(self, resource: str, threshold_percent: float) -> PsiTrigger:
        return PsiTrigger(self.root / resource, threshold_percent)


class PsiTrigger:
    """One armed PSI trigger; `await wait()` returns each time it fires."""

    def __init__(self, path: Path, threshold_percent: float, window_us: int = WINDOW_US) -> None:
        self.path = path
        self.threshold = threshold_percent
        self.line = trigger_line(threshold_percent, window_us)
        self._fd = -1
        self._epoll: select.epoll | None = None
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            os.write(self._fd, self.line.encode() + b"\0")
            self._epoll = select.epoll(1)
            self._epoll.register(self._fd, select.EPOLLPRI)
        except OSError as e:
            self.close()
            raise PressureError(path, self.line, f"cannot set a PSI trigger: {e.strerror}") from e

    async def wait(self) -> None:
        assert self._epoll is not None
        await anyio.wait_readable(self._epoll.fileno())
        # Drain the ready list; the event itself was consumed by the poll above.
        self._epoll.poll(0)

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
