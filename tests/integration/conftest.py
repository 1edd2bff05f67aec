"""Fixtures shared by the integration tests of the runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner


@pytest.fixture
def reaper() -> Reaper:
    return Reaper.install()


@pytest.fixture
def spawner(reaper: Reaper, no_leaks: None) -> Iterator[Spawner]:
    spawner = Spawner.launch(reaper)
    yield spawner
    spawner.close()
