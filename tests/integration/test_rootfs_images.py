"""Real OCI images built with umoci: import into the store, mount the plan as a
real overlay, and damage blobs to see the import refuse them."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.rootfs import overlay
from supervisor.rootfs.errors import ImageError, RootfsError
from supervisor.rootfs.oci import OciLayout
from supervisor.rootfs.store import LayerStore
from supervisor.units.model import ExecSpec, RootfsSpec, Unit
from tests.conftest import requires_root
from tests.helpers.oci import ABSENT, PRESENT, BuiltImage, add_raw_layer, add_zstd_layer, build_busybox_image

pytestmark = [requires_root, pytest.mark.root, pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci")]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """Built once per module; tests that damage it work on a copy."""
    return build_busybox_image(tmp_path_factory.mktemp("oci") / "busybox", "1.0")


@pytest.fixture
def image_copy(image: BuiltImage, tmp_path: Path) -> BuiltImage:
    layout = tmp_path / "copy"
    shutil.copytree(image.layout, layout, symlinks=True)
    return BuiltImage(layout=layout, tag=image.tag)


def make_unit(name: str, tmp_path: Path, image_ref: str, writable: str = "persistent") -> Unit:
    return Unit(
        name=name,
        file=tmp_path / "units" / f"{name}.toml",
        exec=ExecSpec(command=("/bin/sh",)),
        rootfs=RootfsSpec(image=image_ref, writable=writable),  # type: ignore[arg-type]
    )


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "state", tmp_path / "run"


def test_image_mounts_with_whiteouts_and_opaque_dirs_applied(
    image: BuiltImage, tmp_path: Path, dirs: tuple[Path, Path], unique_name: str, no_leaks: None
) -> None:
    state, run = dirs
    store = LayerStore(state)
    unit = make_unit(unique_name, tmp_path, image.ref, "ephemeral")
    plan = overlay.prepare(unit, state, run, store)
    assert len(plan.lowerdirs) == 3
    root = Path(plan.target)
    overlay.mount(plan)
    try:
        for path in PRESENT:
            assert (root / path.lstrip("/")).exists(), path
        for path in ABSENT:
            assert not os.path.lexists(root / path.lstrip("/")), path
        assert os.listdir(root / "opt" / "old") == ["c"]
        assert os.listdir(root / "www") == []
        assert (root / "etc" / "motd").read_text() == "layered\n"
        assert os.stat(root).st_mode & 0o777 == 0o755
    finally:
        overlay.unmount(plan.target)
    assert overlay.command_in_rootfs(plan, "sh")
    assert overlay.command_in_rootfs(plan, "/bin/busybox")
    assert not overlay.command_in_rootfs(plan, "/etc/motd")  # not executable
    overlay.cleanup(unique_name, "ephemeral", state, run)
    assert not (run / "units" / unique_name).exists()
    assert not (state / "units" / unique_name).exists()


def test_reimport_is_a_no_op_and_images_are_listed(image: BuiltImage, tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "state")
    first = store.import_image(image.layout, image.tag)
    inodes = [p.stat().st_ino for p in store.resolve(image.ref)]
    again = store.import_image(image.layout, image.tag)
    assert again == first
    assert [p.stat().st_ino for p in store.resolve(image.ref)] == inodes
    [listed] = store.images()
    assert listed.name == image.ref and listed.tag == "1.0"
    assert listed.digest == OciLayout(image.layout).manifest_descriptor("1.0").digest
    assert len(listed.layers) == 3 and listed.size > 500_000 and listed.created


def test_two_images_sharing_a_base_store_it_once(image_copy: BuiltImage, tmp_path: Path) -> None:
    add_raw_layer(image_copy.layout, image_copy.tag, {"extra": b"x"}, tmp_path / "work", new_tag="2.0")
    store = LayerStore(tmp_path / "state")
    a = store.resolve(image_copy.ref)
    b = store.resolve(f"{image_copy.layout}:2.0")
    assert b[:3] == a and len(b) == 4
    assert len(list((tmp_path / "state" / "layers" / "sha256").iterdir())) == 4
    assert len(store.images()) == 2
    # rm takes the layer only 2.0 used at once (as docker's rmi); the shared ones stay
    removal = store.remove_image(f"{image_copy.layout}:2.0")
    assert removal.layers == (f"sha256:{b[3].name}",) and removal.freed > 0
    assert store.gc() == []
    assert all(p.is_dir() for p in a) and not b[3].exists()


def biggest_layer_blob(layout: Path) -> Path:
    return max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)


def test_corrupt_layer_blob_names_the_digest(image_copy: BuiltImage, tmp_path: Path) -> None:
    blob = biggest_layer_blob(image_copy.layout)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    store = LayerStore(tmp_path / "state")
    with pytest.raises(ImageError) as info:
        store.resolve(image_copy.ref)
    assert info.value.digest == f"sha256:{blob.name}"
    assert str(blob) in str(info.value) and "corrupt" in str(info.value)
    assert not (tmp_path / "state" / "images").exists() or not list((tmp_path / "state" / "images").iterdir())
    assert not list((tmp_path / "state" / "layers" / "tmp").iterdir())


def test_truncated_layer_blob_names_the_digest(image_copy: BuiltImage, tmp_path: Path) -> None:
    blob = biggest_layer_blob(image_copy.layout)
    size = blob.stat().st_size
    os.truncate(blob, size // 2)
    with pytest.raises(ImageError, match=f"truncated: {size // 2} of {size} bytes") as info:
        LayerStore(tmp_path / "state").resolve(image_copy.ref)
    assert info.value.digest == f"sha256:{blob.name}"


def test_unknown_tag_lists_available_tags(image: BuiltImage, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match='tag "nope" not found; available tags: 1.0'):
        LayerStore(tmp_path / "state").resolve(f"{image.layout}:nope")


def test_image_errors_surface_as_rootfs_errors_on_the_unit(image: BuiltImage, tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    state, run = dirs
    unit = make_unit("web", tmp_path, f"{image.layout}:nope")
    with pytest.raises(RootfsError) as info:
        overlay.prepare(unit, state, run, LayerStore(state))
    assert info.value.key == "[rootfs].image"
    assert str(info.value).startswith(f"{unit.file}: [rootfs].image: ")
    assert 'tag "nope" not found' in str(info.value)


def test_concurrent_imports_of_one_image_agree(image: BuiltImage, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = LayerStore(tmp_path / "state")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: store.resolve(image.ref), range(4)))
    assert all(r == results[0] for r in results)
    assert len(list((tmp_path / "state" / "layers" / "sha256").iterdir())) == 3
    assert not list((tmp_path / "state" / "layers" / "tmp").iterdir())
    assert len(store.images()) == 1


@pytest.mark.timeout(30)  # the bug this guards against blocks forever
@pytest.mark.parametrize("special", ["index.json", "oci-layout"])
def test_a_fifo_in_a_layout_is_refused_not_read(tmp_path: Path, special: str) -> None:
    # issue 10: an index.json that is a FIFO blocked the shared worker threads
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    (layout / special).unlink()
    os.mkfifo(layout / special)
    with pytest.raises(ImageError, match=rf"{special}: is a FIFO, not a regular file"):
        LayerStore(tmp_path / "state").import_image(layout, "v1")


def test_a_device_as_a_blob_is_refused(tmp_path: Path) -> None:
    from supervisor.rootfs.oci import open_regular

    with pytest.raises(ImageError, match="is a character device, not a regular file"):
        open_regular(Path("/dev/zero"))
    with pytest.raises(ImageError, match="is a directory"):
        open_regular(tmp_path)


def test_a_zstd_layer_is_unpacked(image_copy: BuiltImage, tmp_path: Path) -> None:
    blob = add_zstd_layer(
        image_copy.layout,
        image_copy.tag,
        {"zstd/": None, "zstd/hello": b"from a zstd layer\n", "etc/": None, "etc/.wh.motd": b""},
    )
    store = LayerStore(tmp_path / "state")
    stored = store.import_image(image_copy.layout, image_copy.tag)
    assert len(stored.layers) == 4
    top = store.layer_path(stored.layers[-1])
    assert (top / "zstd" / "hello").read_text() == "from a zstd layer\n"
    whiteout = os.lstat(top / "etc" / "motd")  # the OCI whiteout became overlay's 0/0 device
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    # the layer store keys it by the uncompressed digest (the config's diff id)
    assert stored.layers[-1] != blob


def test_a_corrupt_zstd_layer_names_the_blob(image_copy: BuiltImage, tmp_path: Path) -> None:
    blob = add_zstd_layer(image_copy.layout, image_copy.tag, {"zstd/": None, "zstd/hello": b"x" * 4096})
    path = image_copy.layout / "blobs" / "sha256" / blob.split(":", 1)[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    store = LayerStore(tmp_path / "state")
    with pytest.raises(ImageError) as info:
        store.import_image(image_copy.layout, image_copy.tag)
    assert blob in str(info.value) and "corrupt" in str(info.value), str(info.value)
    assert not any((tmp_path / "state" / "layers" / "tmp").iterdir())  # no half-unpacked layer left
