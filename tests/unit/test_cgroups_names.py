"""Pure: slice and scope names."""

from __future__ import annotations

import pytest

from supervisor.cgroups import names


def test_expand_nested_slice() -> None:
    assert names.expand_slice("supd-web-a.slice") == ["supd.slice", "supd-web.slice", "supd-web-a.slice"]


def test_expand_top_slice() -> None:
    assert names.expand_slice("supd.slice") == ["supd.slice"]


def test_root_slice_expands_to_nothing() -> None:
    assert names.expand_slice("-.slice") == []


@pytest.mark.parametrize("bad", ["supd--web.slice", "-supd.slice", "supd-.slice", ".slice", "supd.scope", "a/b.slice"])
def test_expand_rejects_bad_names(bad: str) -> None:
    with pytest.raises(names.SliceNameError, match=bad.replace(".", r"\.")):
        names.expand_slice(bad)


def test_slice_name_from_unit_key() -> None:
    assert names.slice_name(None) == "supd.slice"
    assert names.slice_name("batch") == "supd-batch.slice"


def test_slice_name_rejects_empty_component() -> None:
    with pytest.raises(names.SliceNameError):
        names.slice_name("web-")


def test_scope_name_and_inverse() -> None:
    assert names.scope_name("web") == "supd-web.scope"
    assert names.unit_of_scope("supd-web.scope") == "web"
    assert names.unit_of_scope("supd-a-b.scope") == "a-b"
    assert names.unit_of_scope("other.scope") is None
    assert names.unit_of_scope("supd-.scope") is None
    assert names.unit_of_scope("supd-web.slice") is None


def test_scope_name_rejects_empty() -> None:
    with pytest.raises(ValueError):
        names.scope_name("")
