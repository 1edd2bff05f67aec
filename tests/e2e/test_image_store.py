"""`supctl image list|rm|prune` on a real supd and the real umoci images of
tests/helpers/oci.py: which unit uses what, what an image shares, refusals
while in use, and removal killed -9 half way (failpoint store.trash) repaired
by the next supd."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Supd, wait_for
from tests.e2e.test_containers import container_unit, sh, start_unit
from tests.helpers.oci import BuiltImage, add_raw_layer, build_busybox_image


@pytest.fixture(scope="module")
def two_tags(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """v1: the 3-layer busybox image; v2 = v1 + a layer with /v2/only-in-v2."""
    image = build_busybox_image(tmp_path_factory.mktemp("oci") / "layout", "v1")
    add_raw_layer(image.layout, "v1", {"v2/": None, "v2/only-in-v2": b"v2\n"}, image.layout.parent / "work", new_tag="v2")
    return image


def stored_layers(supd: Supd) -> set[str]:
    store = supd.state / "layers" / "sha256"
    return {f"sha256:{p.name}" for p in store.iterdir()} if store.is_dir() else set()


def trash(supd: Supd) -> list[Path]:
    d = supd.state / "layers" / "trash"
    return sorted(d.iterdir()) if d.is_dir() else []


def images_by_tag(supd: Supd) -> dict[str, dict[str, object]]:
    r = supd.ctl("image", "list", "--json")
    assert r.returncode == 0, r.stderr
    return {str(img["tag"]): img for img in json.loads(r.stdout)}


def import_both(supd: Supd, image: BuiltImage) -> dict[str, dict[str, object]]:
    for tag in ("v1", "v2"):
        r = supd.ctl("image", "import", f"{image.layout}:{tag}")
        assert r.returncode == 0, r.stderr
    return images_by_tag(supd)


def layers_of(image: dict[str, object]) -> list[str]:
    layers = image["layers"]
    assert isinstance(layers, list)
    return [str(x) for x in layers]


def test_list_rm_refused_while_used_then_rm_and_prune(supd: Supd, two_tags: BuiltImage) -> None:
    supd.start()
    images = import_both(supd, two_tags)
    v1, v2 = images["v1"], images["v2"]
    v2_only = set(layers_of(v2)) - set(layers_of(v1))
    assert len(v2_only) == 1
    # v1's three layers are all in v2: its whole size but the config is shared
    sizes = v1["layer_sizes"]
    assert isinstance(sizes, list) and v1["shared_size"] == sum(sizes) > 0
    assert v2["shared_size"] == sum(sizes) and v1["units"] == [] and v2["units"] == []

    start_unit(supd, "onv2", container_unit(image=f"{two_tags.layout}:v2"))
    supd.write_unit("alsov2", container_unit(image=f"{two_tags.layout}:v2"))
    assert supd.ctl("reload").returncode == 0
    supd.wait_state("alsov2", "running", timeout=30)
    images = images_by_tag(supd)
    assert images["v2"]["units"] == ["alsov2", "onv2"] and images["v1"]["units"] == []
    table = supd.ctl("image", "list").stdout.splitlines()
    assert table[0].split() == ["IMAGE", "DIGEST", "LAYERS", "SIZE", "SHARED", "CREATED", "UNITS"]
    assert [line.split()[-1] for line in table[1:] if line.split()[2] == "4"] == ["alsov2,onv2"], table

    # in use: refused, naming the units; nothing removed
    before = stored_layers(supd)
    r = supd.ctl("image", "rm", f"{two_tags.layout}:v2")
    assert r.returncode != 0
    assert "in use by unit(s) alsov2, onv2" in r.stderr and str(v2["digest"]) in r.stderr, r.stderr
    assert stored_layers(supd) == before and set(images_by_tag(supd)) == {"v1", "v2"}
    # the unit still runs from its layers
    assert sh(supd, "onv2", "cat /v2/only-in-v2") == "v2\n"

    # v1 is not in use: its record goes, its layers stay (v2 uses all of them)
    r = supd.ctl("image", "rm", str(v1["digest"]))
    assert r.returncode == 0, r.stderr
    assert f"removed image {two_tags.layout}:v1" in r.stdout and "removed layer" not in r.stdout, r.stdout
    assert set(images_by_tag(supd)) == {"v2"} and stored_layers(supd) == before
    r = supd.ctl("image", "rm", str(v1["digest"]))
    assert r.returncode != 0 and "no image" in r.stderr, r.stderr

    # unload the units: now v2 goes with all four layers, and the bytes are reported
    for unit in ("onv2", "alsov2"):
        (supd.units / f"{unit}.toml").unlink()
    assert supd.ctl("reload").returncode == 0
    wait_for(lambda: supd.ctl("status", "onv2").returncode == 4 and supd.ctl("status", "alsov2").returncode == 4, what="units gone")
    r = supd.ctl("image", "rm", f"{two_tags.layout}:v2", "--json")
    assert r.returncode == 0, r.stderr
    removal = json.loads(r.stdout)
    assert set(removal["layers"]) == before and removal["freed"] > 1_000_000
    assert stored_layers(supd) == set() and images_by_tag(supd) == {} and trash(supd) == []


def test_prune_keeps_what_records_and_units_use(supd: Supd, two_tags: BuiltImage, tmp_path: Path) -> None:
    supd.start()
    import_both(supd, two_tags)
    layers_dir = supd.state / "layers"
    # an orphan layer (no record), a stale temp dir of a dead import, a fresh one
    orphan = layers_dir / "sha256" / ("e" * 64)
    (orphan / "etc").mkdir(parents=True)
    (orphan / "etc" / "big").write_bytes(os.urandom(1 << 20))
    stale, fresh = layers_dir / "tmp" / "layer-dead", layers_dir / "tmp" / "layer-busy"
    stale.mkdir(parents=True)
    fresh.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    # a unit naming a store layer directly in `layers = [...]` keeps it
    named = layers_dir / "sha256" / ("d" * 64)
    (named / "bin").mkdir(parents=True)
    supd.write_unit("direct", container_unit([named], command=["/bin/true"]).replace('writable = "ephemeral"', 'writable = "ephemeral"\n'))
    assert supd.ctl("reload").returncode == 0

    r = supd.ctl("image", "prune")
    assert r.returncode == 0, r.stderr
    assert f"removed layer sha256:{'e' * 64}" in r.stdout and "removed 1 stale temp dir(s)" in r.stdout, r.stdout
    freed = r.stdout.splitlines()[-1]
    assert freed.startswith("freed ") and freed.endswith("M"), r.stdout
    assert not orphan.exists() and not stale.exists() and fresh.is_dir() and named.is_dir()
    assert len(stored_layers(supd)) == 5 and set(images_by_tag(supd)) == {"v1", "v2"}
    # nothing more to do
    r = supd.ctl("image", "prune", "--json")
    assert json.loads(r.stdout) == {"images": [], "layers": [], "tmp_dirs": 0, "freed": 0}
    (supd.units / "direct.toml").unlink()
    assert supd.ctl("reload").returncode == 0
    wait_for(lambda: supd.ctl("status", "direct").returncode == 4, what="direct gone")
    r = supd.ctl("image", "prune", "--json")
    assert json.loads(r.stdout)["layers"] == [f"sha256:{'d' * 64}"]


def retag(layout: Path, tag: str, to_tag: str) -> None:
    """Point `tag` in the layout's index.json at the manifest `to_tag` names."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    target = by_tag[to_tag]
    by_tag[tag].update(digest=target["digest"], size=target["size"])
    index_path.write_text(json.dumps(index))


def test_rm_after_the_tag_moved_keeps_the_layers_a_running_unit_is_mounted_on(
    supd: Supd, two_tags: BuiltImage, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    subprocess.run(["cp", "-a", str(two_tags.layout), str(layout)], check=True)
    supd.start()
    images = import_both(supd, BuiltImage(layout, two_tags.tag))
    v2_digest = str(images["v2"]["digest"])
    v2_only = set(layers_of(images["v2"])) - set(layers_of(images["v1"]))
    start_unit(supd, "onv2", container_unit(image=f"{layout}:v2"))
    retag(layout, "v2", "v1")  # the tag moves on while onv2 runs on the old image
    assert images_by_tag(supd)["v1"]["units"] == ["onv2"]
    r = supd.ctl("image", "rm", v2_digest)
    assert r.returncode == 0, r.stderr
    # the record went, the layer its overlay is mounted on stays while it runs
    assert v2_only <= stored_layers(supd)
    assert sh(supd, "onv2", "cat /v2/only-in-v2") == "v2\n"
    assert supd.ctl("stop", "onv2").returncode == 0
    r = supd.ctl("image", "prune", "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["layers"]) == v2_only


def supctl_in_background(supd: Supd, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli.main", *args],
        env=supd.env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def kill_9(supd: Supd) -> None:
    assert supd.proc is not None
    supd.proc.send_signal(signal.SIGKILL)
    supd.proc.wait()
    supd.proc = None


def with_failpoints(supd: Supd, points: str) -> None:
    base = Supd.env.__get__(supd)
    supd.env = lambda: dict(base(), SUPD_FAILPOINTS=points)  # type: ignore[method-assign]


def test_rm_killed_half_way_is_finished_by_the_next_supd(supd: Supd, two_tags: BuiltImage) -> None:
    supd.start()
    images = import_both(supd, two_tags)
    v1_layers, v2_layers = set(layers_of(images["v1"])), set(layers_of(images["v2"]))
    supd.stop()

    with_failpoints(supd, "store.trash=delay(60s)")
    supd.start()
    client = supctl_in_background(supd, "image", "rm", f"{two_tags.layout}:v2")
    try:
        # the record is gone and v2's own layer sits whole in the trash
        wait_for(lambda: trash(supd), timeout=30, what="a dir in the trash")
        kill_9(supd)
    finally:
        client.kill()
        client.wait()
    assert stored_layers(supd) == v1_layers
    assert len(trash(supd)) == 1

    supd.env = lambda: Supd.env.__get__(supd)()  # type: ignore[method-assign]
    supd.start()
    assert trash(supd) == []
    assert "store_trash_emptied" in supd.daemon_log()
    assert set(images_by_tag(supd)) == {"v1"} and stored_layers(supd) == v1_layers
    # the store works: v2 imports again, and a unit runs on it
    assert supd.ctl("image", "import", f"{two_tags.layout}:v2").returncode == 0
    assert stored_layers(supd) == v2_layers
    start_unit(supd, "again", container_unit(image=f"{two_tags.layout}:v2"))
    assert sh(supd, "again", "cat /v2/only-in-v2") == "v2\n"


def test_prune_killed_half_way_and_a_missing_layer_reported_then_reimported(supd: Supd, two_tags: BuiltImage) -> None:
    supd.start()
    images = import_both(supd, two_tags)
    orphans = [supd.state / "layers" / "sha256" / (c * 64) for c in "ef"]
    for orphan in orphans:
        (orphan / "x").mkdir(parents=True)
    supd.stop()

    with_failpoints(supd, "store.trash=delay(60s)")
    supd.start()
    client = supctl_in_background(supd, "image", "prune")
    try:
        wait_for(lambda: trash(supd), timeout=30, what="a dir in the trash")
        kill_9(supd)
    finally:
        client.kill()
        client.wait()
    # one orphan in the trash, the other not reached yet
    assert len(trash(supd)) == 1 and sum(o.exists() for o in orphans) == 1

    # a layer removed by hand: its record is reported at start
    lost = layers_of(images["v2"])[-1]
    hand_removed = supd.state / "layers" / "sha256" / lost.split(":", 1)[1]
    subprocess.run(["rm", "-rf", str(hand_removed)], check=True)

    supd.env = lambda: Supd.env.__get__(supd)()  # type: ignore[method-assign]
    supd.start()
    assert trash(supd) == []
    log = supd.daemon_log()
    assert "image_layer_missing" in log and lost in log
    r = supd.ctl("image", "prune", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["layers"]) == 1
    assert not any(o.exists() for o in orphans)
    # next use re-imports the missing layer from the layout
    start_unit(supd, "v2", container_unit(image=f"{two_tags.layout}:v2"))
    assert sh(supd, "v2", "cat /v2/only-in-v2") == "v2\n"
    assert hand_removed.is_dir()
