"""Property: parse_unit on any TOML-shaped document either returns a Unit or
raises UnitFileError — never another exception."""

from __future__ import annotations

import datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.units.model import Unit
from supervisor.units.parse import (
    BIND_KEYS,
    EXEC_KEYS,
    FREEZE_KEYS,
    HEALTH_KEYS,
    RESOURCES_KEYS,
    RESTART_KEYS,
    ROOTFS_KEYS,
    SECTIONS,
    STOP_KEYS,
    UNIT_KEYS,
    UnitFileError,
    parse_unit,
)

FILE = Path("/srv/units/web.toml")
KNOWN_KEYS = sorted(
    set(SECTIONS + UNIT_KEYS + EXEC_KEYS + ROOTFS_KEYS + BIND_KEYS + RESOURCES_KEYS + RESTART_KEYS)
    | set(STOP_KEYS + HEALTH_KEYS + FREEZE_KEYS + ("memory", "cpu", "io", "TZ"))
)
# Values that are valid somewhere, so that documents get past the first check.
INTERESTING = [
    "10s", "0", "100ms", "64M", "1G", "50%", "SIGTERM", "0-1,3", "/bin/sh", "/www", "layers/a", "web", "db",
    "nobody", "1000:1000", "on-failure", "always", "persistent", "none", "host", "restart", "infinity",
    "img:1", "a..b", "", "\0",
]  # fmt: skip

keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=4)
# Cheap strategies on purpose: generation, not parsing, dominates the run time.
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 100, 10_001, -1, 0.5, 1.5, float("nan"), float("inf"), -0.0]),
    st.text(max_size=6),
    st.sampled_from(INTERESTING),
    st.sampled_from([datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), datetime.time(1, 2)]),
)
toml_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=8,
)
# One level of nesting is enough for values under known keys (lists of binds, tables of env).
shallow_values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(keys, scalars, max_size=3)
documents = st.dictionaries(st.sampled_from(SECTIONS) | st.text(max_size=4), toml_values, max_size=4)

section_tables = {
    "unit": UNIT_KEYS, "exec": EXEC_KEYS, "rootfs": ROOTFS_KEYS, "resources": RESOURCES_KEYS,
    "restart": RESTART_KEYS, "stop": STOP_KEYS, "health": HEALTH_KEYS, "freeze": FREEZE_KEYS,
}  # fmt: skip


@st.composite
def near_valid_documents(draw: st.DrawFn) -> dict[str, object]:
    """A valid [exec] plus sections whose keys are all known, with arbitrary values."""
    doc: dict[str, object] = {"exec": {"command": ["/bin/true"]}}
    for section in draw(st.lists(st.sampled_from(sorted(section_tables)), max_size=4, unique=True)):
        names = draw(st.lists(st.sampled_from(section_tables[section]), max_size=4, unique=True))
        doc[section] = {name: draw(shallow_values) for name in names}
    return doc


def parse_or_error(doc: dict[str, object]) -> Unit | UnitFileError:
    try:
        return parse_unit("web", doc, FILE)
    except UnitFileError as error:
        str(error)  # rendering must not fail either
        return error


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_document_gives_a_unit_or_a_unit_file_error(doc: dict[str, object]) -> None:
    assert isinstance(parse_or_error(doc), (Unit, UnitFileError))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid_documents())
def test_known_keys_with_any_values_give_a_unit_or_a_unit_file_error(doc: dict[str, object]) -> None:
    result = parse_or_error(doc)
    assert isinstance(result, (Unit, UnitFileError))
    if isinstance(result, UnitFileError):
        assert result.key.startswith("[") and str(result).startswith(f"{FILE}: [")


def test_a_datetime_value_is_refused_not_crashed() -> None:
    doc: dict[str, object] = {"exec": {"command": ["/bin/true"]}, "stop": {"timeout": datetime.time(1, 2)}}
    assert isinstance(parse_or_error(doc), UnitFileError)
