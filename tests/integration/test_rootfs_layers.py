"""Layer unpacking on real files (root: device nodes, ownership, trusted xattrs),
from OCI layouts written here byte by byte: whiteout conversion, escapes,
hardlinks, media types, nested indexes, digest checks."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.rootfs.errors import ImageError
from supervisor.rootfs.oci import (
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_TAR,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    OVERLAY_OPAQUE_XATTR,
    REF_NAME_ANNOTATION,
    host_arch,
)
from supervisor.rootfs.store import LayerStore
from tests.conftest import requires_root

pytestmark = [requires_root, pytest.mark.root]

TarBuilder = Callable[[tarfile.TarFile], None]


def tar_bytes(build: TarBuilder) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: Any) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = attrs.pop("mode", 0o644)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def add_entry(tar: tarfile.TarFile, name: str, kind: bytes, **attrs: Any) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = attrs.pop("mode", 0o755)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info)


class Layout:
    """A minimal OCI image layout writer (what skopeo/umoci would produce)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: list[dict[str, Any]] = []

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def manifest(self, layers: list[tuple[bytes, str]], config: dict[str, Any] | None = None) -> dict[str, Any]:
        layer_descs, diff_ids = [], []
        for tar, media in layers:
            data = gzip.compress(tar) if media != MEDIA_LAYER_TAR else tar
            layer_descs.append({"mediaType": media, **self.blob(data)})
            diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        cfg = {"architecture": host_arch(), "os": "linux", "config": config or {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        cfg_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **self.blob(json.dumps(cfg).encode())}
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST, "config": cfg_desc, "layers": layer_descs}
        return {"mediaType": MEDIA_OCI_MANIFEST, **self.blob(json.dumps(manifest).encode())}

    def tag(self, tag: str, desc: dict[str, Any]) -> None:
        self.index.append({**desc, "annotations": {REF_NAME_ANNOTATION: tag}})
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.index}))


def import_one(tmp_path: Path, layers: list[tuple[bytes, str]], config: dict[str, Any] | None = None) -> tuple[LayerStore, list[Path]]:
    layout = Layout(tmp_path / "img")
    layout.tag("t", layout.manifest(layers, config))
    store = LayerStore(tmp_path / "state")
    return store, store.resolve(f"{layout.root}:t")


def test_whiteouts_become_overlay_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "etc", tarfile.DIRTYPE)
        add_file(tar, "etc/.wh.hostname")
        add_file(tar, "opt/old/.wh..wh..opq")  # parent dir not listed yet
        add_entry(tar, "opt/old", tarfile.DIRTYPE, mode=0o750, uid=7, gid=8)
        add_file(tar, "opt/old/c", b"c\n")
        add_file(tar, ".wh..wh.plnk")  # aufs bookkeeping: dropped

    _store, [layer] = import_one(tmp_path, [(tar_bytes(build), MEDIA_LAYER_TAR)])
    wh = os.lstat(layer / "etc" / "hostname")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert not (layer / "etc" / ".wh.hostname").exists()
    assert os.getxattr(layer / "opt" / "old", OVERLAY_OPAQUE_XATTR) == b"y"
    assert not (layer / "opt" / "old" / ".wh..wh..opq").exists()
    st = os.lstat(layer / "opt" / "old")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 7, 8)
    assert sorted(os.listdir(layer)) == ["etc", "opt"]


def test_ownership_modes_mtimes_devices_hardlinks_symlinks_kept(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        add_entry(tar, "bin", tarfile.DIRTYPE, mtime=1_000_000)
        add_file(tar, "bin/su", b"#!", mode=0o4755, uid=0, gid=0, mtime=1_234_567)
        add_file(tar, "bin/tool", b"tool", mode=0o750, uid=1000, gid=1001)
        add_entry(tar, "bin/tool2", tarfile.LNKTYPE, linkname="bin/tool")
        add_entry(tar, "bin/sh", tarfile.SYMTYPE, linkname="busybox", uid=5, gid=6)
        add_entry(tar, "dev", tarfile.DIRTYPE)
        add_entry(tar, "dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add_entry(tar, "dev/fifo", tarfile.FIFOTYPE, mode=0o600)

    _store, [layer] = import_one(tmp_path, [(tar_bytes(build), MEDIA_LAYER_GZIP)])
    su = os.lstat(layer / "bin" / "su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_mtime == 1_234_567
    tool = os.lstat(layer / "bin" / "tool")
    assert (tool.st_uid, tool.st_gid, stat.S_IMODE(tool.st_mode)) == (1000, 1001, 0o750)
    assert os.lstat(layer / "bin" / "tool2").st_ino == tool.st_ino
    sh = os.lstat(layer / "bin" / "sh")
    assert os.readlink(layer / "bin" / "sh") == "busybox" and (sh.st_uid, sh.st_gid) == (5, 6)
    null = os.lstat(layer / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(layer / "dev" / "fifo").st_mode)
    assert os.lstat(layer / "bin").st_mtime == 1_000_000


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda t: add_file(t, "../evil", b"x"), "refused"),
        (lambda t: add_file(t, "/etc/evil", b"x"), "refused"),
        (
            lambda t: (add_entry(t, "link", tarfile.SYMTYPE, linkname="/tmp"), add_file(t, "link/evil", b"x")),
            "goes through the symlink link",
        ),
        (lambda t: add_entry(t, "h", tarfile.LNKTYPE, linkname="../../etc/passwd"), "hardlink refused"),
        (lambda t: add_entry(t, "h", tarfile.LNKTYPE, linkname="missing"), "not in this layer"),
    ],
)
def test_escaping_entries_are_refused_and_nothing_is_stored(tmp_path: Path, build: TarBuilder, expected: str) -> None:
    layout = Layout(tmp_path / "img")
    layout.tag("t", layout.manifest([(tar_bytes(build), MEDIA_LAYER_TAR)]))
    store = LayerStore(tmp_path / "state")
    with pytest.raises(ImageError, match=expected) as info:
        store.resolve(f"{layout.root}:t")
    assert info.value.digest is not None
    assert not list((tmp_path / "state" / "layers" / "sha256").iterdir())
    assert not list((tmp_path / "state" / "layers" / "tmp").iterdir())
    assert not Path("/tmp/evil").exists() and not Path("/etc/evil").exists()


def test_docker_gzip_media_type_and_config(tmp_path: Path) -> None:
    tar = tar_bytes(lambda t: add_file(t, "hello", b"hi"))
    config = {"Env": ["A=1"], "Cmd": ["/hello"], "WorkingDir": "/w", "User": "1000"}
    store, [layer] = import_one(tmp_path, [(tar, MEDIA_DOCKER_LAYER_GZIP)], config)
    assert (layer / "hello").read_bytes() == b"hi"
    [image] = store.images()
    assert image.config.cmd == ("/hello",) and image.config.env == ("A=1",) and image.config.user == "1000"


def test_nested_index_resolves_the_host_platform(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "img")
    ours = layout.manifest([(tar_bytes(lambda t: add_file(t, "ours")), MEDIA_LAYER_TAR)])
    other = layout.manifest([(tar_bytes(lambda t: add_file(t, "other")), MEDIA_LAYER_TAR)])
    index = {
        "schemaVersion": 2,
        "manifests": [
            {**other, "platform": {"os": "linux", "architecture": "not-" + host_arch()}},
            {**ours, "platform": {"os": "linux", "architecture": host_arch()}},
        ],
    }
    layout.tag("multi", {"mediaType": MEDIA_OCI_INDEX, **layout.blob(json.dumps(index).encode())})
    store = LayerStore(tmp_path / "state")
    [layer] = store.resolve(f"{layout.root}:multi")
    assert os.listdir(layer) == ["ours"]
    assert store.images()[0].digest == ours["digest"]


def test_diff_id_mismatch_is_an_error(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "img")
    desc = layout.manifest([(tar_bytes(lambda t: add_file(t, "a")), MEDIA_LAYER_GZIP)])
    manifest = json.loads(layout.blob_path(desc["digest"]).read_bytes())
    config = json.loads(layout.blob_path(manifest["config"]["digest"]).read_bytes())
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    manifest["config"].update(layout.blob(json.dumps(config).encode()))
    layout.tag("t", {"mediaType": MEDIA_OCI_MANIFEST, **layout.blob(json.dumps(manifest).encode())})
    with pytest.raises(ImageError, match="the image config says sha256:0000"):
        LayerStore(tmp_path / "state").resolve(f"{layout.root}:t")


def test_manifest_blob_corruption_is_caught(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "img")
    desc = layout.manifest([(tar_bytes(lambda t: add_file(t, "a")), MEDIA_LAYER_TAR)])
    layout.tag("t", desc)
    path = layout.blob_path(desc["digest"])
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="blob is corrupt") as info:
        LayerStore(tmp_path / "state").resolve(f"{layout.root}:t")
    assert info.value.digest == desc["digest"] and desc["digest"] in str(info.value)
