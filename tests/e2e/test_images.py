"""`supctl image import PATH:TAG` and `supctl image list` on a real supd, with
OCI layouts built by the real umoci: the layer store under
state_dir/layers/sha256 keeps a layer shared by two images once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd
from tests.e2e.test_containers import container_unit, sh, start_unit
from tests.helpers.oci import BuiltImage, add_raw_layer, add_zstd_layer, build_busybox_image


@pytest.fixture(scope="module")
def two_tags(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """One layout: v1 (the 3-layer busybox image) and v2 = v1 + one layer
    adding /v2/only-in-v2, so v2 shares v1's three layers."""
    image = build_busybox_image(tmp_path_factory.mktemp("oci") / "layout", "v1")
    add_raw_layer(image.layout, "v1", {"v2/": None, "v2/only-in-v2": b"v2\n"}, image.layout.parent / "work", new_tag="v2")
    return image


def stored_layers(supd: Supd) -> list[str]:
    store = supd.state / "layers" / "sha256"
    return sorted(p.name for p in store.iterdir()) if store.is_dir() else []


def image_list(supd: Supd) -> list[dict[str, object]]:
    r = supd.ctl("image", "list", "--json")
    assert r.returncode == 0, r.stderr
    images = json.loads(r.stdout)
    assert isinstance(images, list)
    return images


def test_import_list_and_shared_layers(supd: Supd, two_tags: BuiltImage) -> None:
    supd.start()
    assert image_list(supd) == []
    r = supd.ctl("image", "import", f"{two_tags.layout}:v1")
    assert r.returncode == 0, r.stderr
    assert "sha256:" in r.stdout
    assert len(stored_layers(supd)) == 3
    r = supd.ctl("image", "import", f"{two_tags.layout}:v2", "--json")
    assert r.returncode == 0, r.stderr
    v2 = json.loads(r.stdout)
    assert v2["tag"] == "v2" and len(v2["layers"]) == 4
    # v2's three lower layers are v1's: stored once, one new layer for v2
    assert len(stored_layers(supd)) == 4
    images = {img["tag"]: img for img in image_list(supd)}
    assert set(images) == {"v1", "v2"}
    v1_layers, v2_layers = images["v1"]["layers"], images["v2"]["layers"]
    assert isinstance(v1_layers, list) and isinstance(v2_layers, list)
    assert v2_layers[:3] == v1_layers
    assert images["v1"]["digest"] != images["v2"]["digest"]
    # importing again changes nothing
    assert supd.ctl("image", "import", f"{two_tags.layout}:v1").returncode == 0
    assert len(stored_layers(supd)) == 4 and len(image_list(supd)) == 2
    # the human table names both, with their layer counts
    table = supd.ctl("image", "list").stdout
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["IMAGE", "DIGEST", "LAYERS"]
    assert sorted(line.split()[2] for line in lines[1:]) == ["3", "4"], table
    # a unit on v2 runs from the stored layers, without storing anything new
    start_unit(supd, "onv2", container_unit(image=f"{two_tags.layout}:v2"))
    assert sh(supd, "onv2", "cat /v2/only-in-v2; ls /opt/old") == "v2\nc\n"
    assert len(stored_layers(supd)) == 4


def test_import_errors_are_clear(supd: Supd, two_tags: BuiltImage, tmp_path: Path) -> None:
    supd.start()
    r = supd.ctl("image", "import", f"{two_tags.layout}:nope")
    assert r.returncode == 1
    assert 'tag "nope" not found' in r.stderr and "v1" in r.stderr and "v2" in r.stderr, r.stderr
    # the words docs/supctl.md shows
    layout = two_tags.layout
    assert r.stderr.startswith(f'supctl: image import {layout}:nope: {layout}/index.json: tag "nope" not found; available tags: '), r.stderr
    r = supd.ctl("image", "import", f"{tmp_path / 'no-such-layout'}:v1")
    assert r.returncode == 1 and "no-such-layout" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    empty = tmp_path / "not-a-layout"
    empty.mkdir()
    r = supd.ctl("image", "import", f"{empty}:v1")
    assert r.returncode == 1 and "not an OCI image layout" in r.stderr, r.stderr
    assert stored_layers(supd) == [] and image_list(supd) == []
    # supd is fine afterwards
    assert supd.ctl("image", "import", f"{two_tags.layout}:v1").returncode == 0
    assert os.path.isdir(supd.state / "layers" / "sha256")


def test_a_layout_whose_index_is_a_fifo_is_refused_and_blocks_nothing(
    supd: Supd, two_tags: BuiltImage, tmp_path: Path
) -> None:
    # issue 10: importing it blocked supd's shared worker threads (every start and `logs`)
    bad = tmp_path / "fifo-layout"
    bad.mkdir()
    (bad / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    os.mkfifo(bad / "index.json")
    supd.start()
    for _ in range(3):
        r = supd.ctl("image", "import", f"{bad}:v1", timeout=30)
        assert r.returncode == 1, r
        assert "index.json: is a FIFO, not a regular file" in r.stderr, r.stderr
    assert supd.ctl("image", "import", f"{two_tags.layout}:v1", timeout=60).returncode == 0
    assert supd.ctl("list").returncode == 0


def test_an_image_with_a_zstd_layer_imports_and_runs(supd: Supd, tmp_path: Path) -> None:
    image = build_busybox_image(tmp_path / "layout", "z")
    add_zstd_layer(image.layout, "z", {"zstd/": None, "zstd/hello": b"from a zstd layer\n"})
    supd.start()
    r = supd.ctl("image", "import", image.ref, "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["layers"]) == 4
    start_unit(supd, "zstd", container_unit(image=image.ref))
    assert sh(supd, "zstd", "cat /zstd/hello") == "from a zstd layer\n"
