"""The systemd the tests talk to.

`systemd_sandbox`: one real systemd 252 per test session, PID 1 of an nspawn
sandbox. Booting takes about half a second and the halt about as long, so one
sandbox serves the whole session; every scenario uses its own unit names
(`unique_name`), and each test checks that its scopes are gone afterwards.

`systemd_target`: the driver scenarios run against the sandbox everywhere, and
also against the host's own PID 1 where the host is systemd-booted (the pure
cgroup v2 VM); `SUPD_TEST_HOST_SYSTEMD=0` leaves the host's systemd alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import waiting
from tests.systemd.sandbox import (
    HostSystemd,
    Sandbox,
    boot,
    host_is_systemd_booted,
    host_layout,
    host_pid1,
    nspawn_binary,
)

HOST_OPT_OUT = "SUPD_TEST_HOST_SYSTEMD"


def booted(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Sandbox]:
    """A sandbox for a fixture to yield (skipped without root or nspawn).
    Halting it at the end ends its whole PID namespace, supd and any unit
    it left running (live restore) included; anything left is a failure."""
    if os.geteuid() != 0:
        pytest.skip("the systemd sandbox needs root")
    if nspawn_binary() is None:
        pytest.skip("systemd-nspawn is missing (install the Debian package systemd-container)")
    base: Path = tmp_path_factory.mktemp(name)
    sandbox = boot(base)
    try:
        yield sandbox
    finally:
        problems = sandbox.down()
        assert not problems, f"sandbox teardown left: {problems}"


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """waiting.wait_for at a sandbox's pace: it answers in tenths of seconds."""
    return waiting.wait_for(predicate, timeout, 0.2, what)


@pytest.fixture(scope="session")
def systemd_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from booted(tmp_path_factory, "sandbox")


@pytest.fixture(scope="session")
def host_systemd() -> HostSystemd:
    if os.geteuid() != 0:
        pytest.skip("driving the host's systemd needs root")
    if not host_is_systemd_booted():
        pytest.skip(
            f"the host is not systemd-booted (PID 1 is {host_pid1()!r}, cgroups {host_layout()}): "
            "the host-systemd scenarios run on a systemd-booted host such as the pure cgroup v2 VM"
        )
    if os.environ.get(HOST_OPT_OUT) == "0":
        pytest.skip(f"{HOST_OPT_OUT}=0: the host's systemd is left alone")
    return HostSystemd()


@pytest.fixture(params=["sandbox", "host"])
def systemd_target(request: pytest.FixtureRequest) -> Sandbox | HostSystemd:
    name = "systemd_sandbox" if request.param == "sandbox" else "host_systemd"
    target: Sandbox | HostSystemd = request.getfixturevalue(name)
    return target
