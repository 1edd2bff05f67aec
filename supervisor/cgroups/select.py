"""Pick the cgroup driver: `cgroup_driver = auto | systemd | cgroupfs`.

auto = systemd when /run/systemd/system exists (systemd is PID 1, sd_booted())
and its bus answers; otherwise cgroupfs. The systemd driver is imported lazily
so a host without it never loads the D-Bus code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import anyio
import structlog

from supervisor.cgroups import layout as layout_mod
from supervisor.cgroups.cgroupfs import CgroupfsDriver
from supervisor.cgroups.driver import CgroupDriver, CgroupError

log = structlog.get_logger()

DriverKind = Literal["auto", "systemd", "cgroupfs"]
SYSTEMD_RUNNING = Path("/run/systemd/system")
BUS_TIMEOUT = 5.0


async def _connect_systemd(address: str | None) -> CgroupDriver:
    from supervisor.cgroups.systemd import SystemdDriver

    with anyio.fail_after(BUS_TIMEOUT):
        return await SystemdDriver.connect(address)


async def open_driver(
    kind: DriverKind = "auto",
    cgroup_root: str | None = None,
    *,
    root: Path = layout_mod.DEFAULT_ROOT,
    systemd_marker: Path = SYSTEMD_RUNNING,
    bus_address: str | None = None,
) -> CgroupDriver:
    """The driver for `kind`. `cgroup_root` only matters to cgroupfs (the
    systemd driver puts slices where systemd says)."""
    if kind not in ("auto", "systemd", "cgroupfs"):
        raise CgroupError("cgroup_driver", kind, 'expected "auto", "systemd" or "cgroupfs"')
    if kind == "systemd":
        return await _connect_systemd(bus_address)
    if kind == "auto" and systemd_marker.exists():
        try:
            driver = await _connect_systemd(bus_address)
        except Exception as e:  # any failure (no module, no socket, no answer) means "no bus"
            log.warning("cgroup_systemd_unavailable", reason=repr(e), fallback="cgroupfs")
        else:
            log.info("cgroup_driver_selected", driver=driver.name, how=kind)
            return driver
    driver = CgroupfsDriver(layout_mod.detect(root), cgroup_root)
    log.info("cgroup_driver_selected", driver=driver.name, how=kind, layout=driver.describe())
    return driver
