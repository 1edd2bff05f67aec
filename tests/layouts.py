"""Which cgroup layout the host running the tests has, and markers for the
tests that only apply to some of them.

A test that needs v1 (legacy or hybrid) or pure v2 says so with one of these
and is skipped elsewhere with the host's layout named, so a run on any host
shows exactly what did not apply there and why. Every behaviour has a test on
each layout where it applies; the pure-v2 ones run in the VM tier.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from supervisor.cgroups.layout import Layout, LayoutKind, detect

SYSTEMD_RUNNING = Path("/run/systemd/system")


@functools.cache
def host_layout() -> Layout:
    return detect()


def host_kind() -> LayoutKind:
    return host_layout().kind


def pid1_name() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip()
    except OSError:
        return "?"


def systemd_booted() -> bool:
    """systemd's own test (sd_booted) plus PID 1 being systemd."""
    return SYSTEMD_RUNNING.is_dir() and pid1_name() == "systemd"


def describe_host() -> str:
    kind = host_kind().value
    return f"{kind} cgroups{', systemd as PID 1' if systemd_booted() else ''}"


def requires_layout(*kinds: LayoutKind, why: str) -> pytest.MarkDecorator:
    """Skip unless the host's layout is one of `kinds`; the reason names both."""
    wanted = " or ".join(k.value for k in kinds)
    return pytest.mark.skipif(
        host_kind() not in kinds,
        reason=f"needs {wanted} cgroups ({why}); this host has {describe_host()}",
    )


requires_v1 = functools.partial(requires_layout, LayoutKind.LEGACY, LayoutKind.HYBRID)
requires_unified = functools.partial(requires_layout, LayoutKind.UNIFIED)


def ncpus() -> int:
    return len(os.sched_getaffinity(0))
