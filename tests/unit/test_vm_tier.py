"""The pure cgroup v2 tier's selection (tests/vm/tier.py) names tests that
exist: a renamed test left in EXCLUDED would run in the VM unasked, and one
left in a driver repeat would silently not run again. Reads the test files as
text only."""

from __future__ import annotations

import re
from pathlib import Path

from tests.vm import tier

REPO = Path(__file__).resolve().parents[2]


def _missing(what: str) -> str | None:
    path, _, name = what.partition("::")
    file = REPO / path
    if not file.is_file():
        return f"{what}: no file {path}"
    if name and not re.search(rf"^(async )?def {re.escape(name)}\(", file.read_text(), re.MULTILINE):
        return f"{what}: no test {name} in {path}"
    return None


def test_every_excluded_entry_names_a_test_that_exists() -> None:
    missing = [m for what in tier.EXCLUDED if (m := _missing(what))]
    assert not missing, missing


def test_every_driver_repeat_names_a_test_that_exists() -> None:
    missing = [m for _, paths in tier.DRIVER_REPEATS.values() for what in paths if (m := _missing(what))]
    missing += [m for what in tier.LONG_MODULES if (m := _missing(what))]
    assert not missing, missing
