"""Bad container input: each unit gets a clear error in `supctl status` and
the state `failed`, nothing stays mounted, and a running container beside
them is untouched."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd
from tests.e2e.test_containers import container_unit, sh, start_unit
from tests.e2e.test_containers_teardown import mounts_anywhere
from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.oci import BuiltImage, build_busybox_image


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_busybox_image(tmp_path_factory.mktemp("oci") / "layout", "v1")


def largest_layer_blob(layout: Path, tag: str) -> Path:
    """The blob file of the image's biggest layer (the busybox one)."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
    biggest = max(manifest["layers"], key=lambda layer: layer["size"])
    return layout / "blobs" / "sha256" / biggest["digest"].split(":")[1]


def damaged_copy(image: BuiltImage, where: Path, how: str) -> tuple[str, str]:
    """A copy of the layout with its biggest layer blob corrupted (one byte
    flipped) or truncated (half its bytes). Returns the ref and the blob's digest."""
    layout = where / f"layout-{how}"
    shutil.copytree(image.layout, layout)
    blob = largest_layer_blob(layout, image.tag)
    data = bytearray(blob.read_bytes())
    if how == "corrupt":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    return f"{layout}:{image.tag}", "sha256:" + blob.name


def test_bad_container_units_fail_clearly_and_leave_nothing(
    supd: Supd, busybox_layer: Path, image: BuiltImage, tmp_path: Path
) -> None:
    good = start_unit(supd, "good", container_unit([busybox_layer]))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a layer\n")
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    corrupt_ref, corrupt_digest = damaged_copy(image, tmp_path, "corrupt")
    truncated_ref, truncated_digest = damaged_copy(image, tmp_path, "truncated")
    missing_bind = f'binds = [{{ source = "{tmp_path / "no-such-dir"}", target = "/mnt" }}]\n'
    # unit → (its file, what its error must say)
    cases = {
        "nolayer": (container_unit(["/nonexistent/supdtest-layer"]), ["[rootfs].layers[0]", "/nonexistent/supdtest-layer", "does not exist"]),
        "filelayer": (container_unit([busybox_layer, a_file]), ["[rootfs].layers[1]", str(a_file), "not a directory"]),
        "looplayer": (container_unit([loop]), ["[rootfs].layers[0]", "symlink loop"]),
        "corrupt": (container_unit(image=corrupt_ref), ["[rootfs].image", corrupt_digest, "corrupt"]),
        "truncated": (container_unit(image=truncated_ref), ["[rootfs].image", truncated_digest, "truncated"]),
        "notag": (container_unit(image=f"{image.layout}:nope"), ["[rootfs].image", 'tag "nope" not found', "v1"]),
        "nobind": (container_unit([busybox_layer], extra_rootfs=missing_bind), ["[rootfs].binds[0].source", "does not exist"]),
        "nocmd": (container_unit([busybox_layer], ["/bin/not-in-rootfs"]), ["/bin/not-in-rootfs", "No such file or directory"]),
        "nouser": (container_unit([busybox_layer], exec_extra='user = "bob"\n'), ['"bob"', "/etc/passwd"]),
    }
    for name, (text, _needles) in cases.items():
        supd.write_unit(name, text)
    for name, (_text, needles) in cases.items():
        st = supd.wait_state(name, "failed", "running", "exited", timeout=30)
        assert st["state"] == "failed", (name, st)
        assert st["pid"] is None and st["cgroup"] is None, (name, st)
        for needle in needles:
            assert needle in st["error"], (name, needle, st["error"])
        # `supctl status UNIT` says it too, and exits 3 (not running)
        r = supd.ctl("status", name)
        assert r.returncode == 3, (name, r.returncode, r.stderr)
        assert needles[0] in r.stdout, (name, r.stdout)
        assert not (supd.runtime / "units" / name).exists(), name
        assert not (supd.state / "units" / name).exists(), name  # ephemeral scratch cleaned
    # problems the unit file itself has are `error`, found before anything is prepared
    unit_file_cases = {
        "badwritable": (container_unit([busybox_layer], writable="sometimes"), "[rootfs].writable"),
        "badbind": (container_unit([busybox_layer], extra_rootfs='binds = [{ source = "/tmp", target = "relative" }]\n'), "[rootfs].binds[0].target"),
    }
    for name, (text, _key) in unit_file_cases.items():
        supd.write_unit(name, text)
    for name, (_text, key) in unit_file_cases.items():
        st = supd.wait_state(name, "error", "failed", "running", timeout=30)
        assert st["state"] == "error" and key in st["error"], (name, st)
        assert not (supd.runtime / "units" / name).exists(), name
    # the running one's: its root, and its network namespace pinned for its CNI DEL
    left = [m for m in mounts_anywhere(supd.root) if "/units/good/" not in m and "/netns/good " not in m]
    assert left == [], left
    st = supd.status("good")
    assert (st["state"], st["pid"], st["restarts"]) == ("running", good["pid"], 0)
    assert sh(supd, "good", "echo alive").strip() == "alive"


def test_bad_image_does_not_poison_the_store(supd: Supd, image: BuiltImage, tmp_path: Path) -> None:
    """A corrupt blob fails its unit; the same image, intact, still imports and
    runs afterwards, and the layer the corrupt copy named was never stored."""
    corrupt_ref, corrupt_digest = damaged_copy(image, tmp_path, "corrupt")
    supd.write_unit("bad", container_unit(image=corrupt_ref))
    supd.start()
    assert supd.wait_state("bad", "failed", "running", timeout=30)["state"] == "failed"
    store = supd.state / "layers" / "sha256"
    stored = {p.name for p in store.iterdir()} if store.exists() else set()
    assert not any(corrupt_digest.split(":")[1] in name for name in stored), stored
    start_unit(supd, "fine", container_unit(image=image.ref))
    assert sh(supd, "fine", "cat /etc/motd") == "layered\n"
