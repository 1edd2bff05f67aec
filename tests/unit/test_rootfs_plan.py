"""Pure parts of rootfs: overlay option strings, the plan's JSON, short names."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.rootfs.errors import RootfsError
from supervisor.rootfs.overlay import (
    PAGE_SIZE,
    RootfsPlan,
    fits_in_page,
    format_mount_data,
    is_option_safe,
    needs_short_names,
    overlay_order,
    short_id,
)


def plan(**kw: object) -> RootfsPlan:
    base: dict[str, object] = {
        "lowerdirs": ("/l/base", "/l/mid", "/l/top"),
        "upperdir": "/s/units/web/upper",
        "workdir": "/s/units/web/work",
        "target": "/r/units/web/rootfs",
        "readonly": False,
        "chdir": None,
    }
    base.update(kw)
    return RootfsPlan(**base)  # type: ignore[arg-type]


def test_mount_data_lists_the_top_layer_first() -> None:
    assert plan().mount_data() == (
        "lowerdir=/l/top:/l/mid:/l/base,upperdir=/s/units/web/upper,workdir=/s/units/web/work"
    )


def test_mount_data_without_upper_has_only_lowerdirs() -> None:
    assert plan(upperdir=None, workdir=None, readonly=True).mount_data() == "lowerdir=/l/top:/l/mid:/l/base"


def test_overlay_order_reverses_unit_order() -> None:
    assert overlay_order([Path("/a"), Path("/b"), "/c"]) == ["/c", "/b", "/a"]


def test_to_json_has_exactly_the_shim_shape_and_round_trips() -> None:
    p = plan(chdir="/s/layers/l", lowerdirs=("abc", "def"))
    data = p.to_json()
    assert data == {
        "lowerdirs": ["abc", "def"],
        "upperdir": "/s/units/web/upper",
        "workdir": "/s/units/web/work",
        "target": "/r/units/web/rootfs",
        "readonly": False,
        "chdir": "/s/layers/l",
    }
    assert RootfsPlan.from_json(data) == p


def test_layer_dirs_are_absolute_top_first_with_upper() -> None:
    p = plan(chdir="/s/layers/l", lowerdirs=("low", "high"))
    assert p.layer_dirs() == [Path("/s/units/web/upper"), Path("/s/layers/l/high"), Path("/s/layers/l/low")]


def test_page_limit_counts_the_terminating_nul() -> None:
    assert fits_in_page("x" * (PAGE_SIZE - 1))
    assert not fits_in_page("x" * PAGE_SIZE)


def test_a_few_long_layers_fit_without_short_names() -> None:
    layers = [f"/var/lib/supd/layers/sha256/{i:064x}" for i in range(5)]
    assert not needs_short_names(layers, "/var/lib/supd/units/web/upper", "/var/lib/supd/units/web/work")


def test_120_store_layers_need_short_names_and_then_fit() -> None:
    layers = [f"/var/lib/supd/layers/sha256/{i:064x}" for i in range(120)]
    upper, work = "/var/lib/supd/units/web/upper", "/var/lib/supd/units/web/work"
    assert needs_short_names(layers, upper, work)
    short = [short_id(layer) for layer in layers]
    assert len(set(short)) == 120
    assert not needs_short_names(short, upper, work)
    assert fits_in_page(format_mount_data(short, upper, work))


def test_the_boundary_is_the_page_size() -> None:
    upper, work = "/u", "/w"
    fixed = len("lowerdir=,upperdir=/u,workdir=/w") + 1
    just_fits = ["/" + "a" * (PAGE_SIZE - fixed - 1)]
    assert not needs_short_names(just_fits, upper, work)
    assert needs_short_names(["/" + "a" * (PAGE_SIZE - fixed)], upper, work)


@pytest.mark.parametrize("path", ["/layers/a,b", "/layers/a:b", "/layers/a\\b"])
def test_option_syntax_in_a_path_forces_short_names(path: str) -> None:
    assert not is_option_safe(path)
    assert needs_short_names([path, "/layers/ok"], None, None)


def test_short_id_is_stable_short_and_safe() -> None:
    a = short_id("/var/lib/supd/layers/sha256/abc")
    assert a == short_id("/var/lib/supd/layers/sha256/abc")
    assert a != short_id("/var/lib/supd/layers/sha256/abd")
    assert len(a) == 8 and is_option_safe(a) and "/" not in a
    assert short_id("/x", 12).startswith(short_id("/x", 8))


def test_rootfs_error_renders_file_key_message() -> None:
    err = RootfsError("units/web.toml", "[rootfs].layers[1]", 'layer "/x" does not exist')
    assert str(err) == 'units/web.toml: [rootfs].layers[1]: layer "/x" does not exist'
    assert (err.file, err.key) == ("units/web.toml", "[rootfs].layers[1]")
