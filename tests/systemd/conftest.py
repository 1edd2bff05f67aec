"""The `systemd_sandbox` fixture: one real systemd 252 per test session.

Booting takes about half a second and the halt about as long, so one sandbox
serves the whole session; every scenario uses its own unit names
(`unique_name`), and each test checks that its scopes are gone afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.sandbox import Sandbox, boot, nspawn_binary


@pytest.fixture(scope="session")
def systemd_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("the systemd sandbox needs root")
    if nspawn_binary() is None:
        pytest.skip("systemd-nspawn is missing (install the Debian package systemd-container)")
    base: Path = tmp_path_factory.mktemp("sandbox")
    sandbox = boot(base)
    try:
        yield sandbox
    finally:
        problems = sandbox.down()
        assert not problems, f"sandbox teardown left: {problems}"
