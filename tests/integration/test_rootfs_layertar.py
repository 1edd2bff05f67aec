"""A layer folder as a push's layer blob, on real files (root: device nodes,
ownership, trusted xattrs): the entries, overlay whiteouts as OCI ones, and
the same bytes every time, also after an unpack by supd's own importer."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from supervisor.rootfs.layercache import LayerCache
from supervisor.rootfs.layertar import write_layer
from supervisor.rootfs.oci import ImageConfig
from supervisor.rootfs.push import PushSource, write_layout
from supervisor.rootfs.store import LayerStore
from tests.conftest import requires_root

pytestmark = [requires_root, pytest.mark.root]

LONG = "d" * 60 + "/" + "f" * 80  # past ustar's 100-character name field


def make_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "conf").write_text("a=1\n")
    os.chmod(root / "etc" / "conf", 0o640)
    os.chown(root / "etc" / "conf", 1000, 2000)
    os.link(root / "etc" / "conf", root / "etc" / "conf.hard")
    (root / "etc" / "link").symlink_to("conf")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 50)
    os.chmod(root / "bin" / "tool", 0o4755)
    os.setxattr(root / "bin" / "tool", "user.note", b"kept")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))  # overlay whiteout
    (root / "opaque").mkdir()
    os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")
    (root / "opaque" / "only").write_text("only\n")
    (root / LONG).parent.mkdir()
    (root / LONG).write_text("long\n")
    (root / "naïve").write_text("utf-8\n")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "sock"))
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (1_700_000_000, 1_600_000_000), follow_symlinks=False)
    return root


def members(blob: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(blob, "r:gz") as tar:
        return tar.getmembers()


def test_entries_whiteouts_and_no_header_noise(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    blob = write_layer(tree, tmp_path / "blob")
    entries = {m.name: m for m in members(tmp_path / "blob")}
    names = list(entries)
    assert names == [
        "bin", "bin/tool", "d" * 60, LONG, "etc", "etc/conf", "etc/conf.hard", "etc/link", "fifo", ".wh.gone",
        "naïve", "null", "opaque", "opaque/.wh..wh..opq", "opaque/only",
    ]  # fmt: skip  (sorted, a directory before its content; no socket)
    conf = entries["etc/conf"]
    assert (conf.uid, conf.gid, conf.mode, conf.uname, conf.gname) == (1000, 2000, 0o640, "", "")
    assert conf.mtime == 1_600_000_000
    assert entries["etc/conf.hard"].islnk() and entries["etc/conf.hard"].linkname == "etc/conf"
    assert entries["etc/link"].issym() and entries["etc/link"].linkname == "conf"
    assert entries["bin/tool"].mode == 0o4755 and entries["bin/tool"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert entries["null"].ischr() and (entries["null"].devmajor, entries["null"].devminor) == (1, 3)
    assert entries["fifo"].isfifo()
    assert entries[".wh.gone"].isreg() and entries[".wh.gone"].size == 0 and entries[".wh.gone"].mtime == 0
    assert not any("trusted.overlay" in key for m in entries.values() for key in m.pax_headers)
    assert not any(key in m.pax_headers for m in entries.values() for key in ("atime", "ctime", "mtime", "uname"))
    assert blob.newest_mtime == 1_600_000_000
    raw = (tmp_path / "blob").read_bytes()
    assert raw[3] == 0 and raw[4:8] == b"\0\0\0\0"  # gzip: no file name, mtime 0
    assert gzip.decompress(raw)[:100].rstrip(b"\0") == b"bin/"  # the first header: no pax header before it


def test_the_same_tree_gives_the_same_bytes_a_changed_one_does_not(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    first = write_layer(tree, tmp_path / "one")
    assert write_layer(tree, tmp_path / "two") == first
    assert (tmp_path / "one").read_bytes() == (tmp_path / "two").read_bytes()
    # another copy (new inodes, made in another order by cp), read at another time
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    os.utime(copy / "etc" / "conf", (1, 1_600_000_000))  # atime only
    assert write_layer(copy, tmp_path / "three") == first
    os.utime(copy / "etc" / "conf", (1, 1_600_000_001))
    assert write_layer(copy, tmp_path / "four").diff_id != first.diff_id


def test_an_unpacked_push_tars_to_the_same_layer(tmp_path: Path) -> None:
    """supd's importer undoes what the writer did: the store's copy of a
    pushed layer tars to the same diff id (whiteouts, opaque dir, hardlinks,
    xattrs, modes and mtimes all come back)."""
    tree = make_tree(tmp_path / "tree")
    (tree / "sock").unlink()
    layout = tmp_path / "layout"
    digest = write_layout(PushSource("test", (tree,), ImageConfig(cmd=("/bin/tool",))), layout)
    assert write_layout(PushSource("test", (tree,), ImageConfig(cmd=("/bin/tool",))), tmp_path / "again") == digest
    store = LayerStore(tmp_path / "state")
    image = store.import_image(layout, "push")
    assert image.digest == digest and image.config.cmd == ("/bin/tool",)
    [layer] = store.resolve(f"{layout}:push")
    assert stat.S_ISCHR(os.lstat(layer / "gone").st_mode)
    back = write_layer(layer, tmp_path / "back")
    assert back.diff_id == image.layers[0]
    shutil.rmtree(tmp_path / "state")


def test_the_cache_hits_an_unchanged_folder_only(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    cache = LayerCache(tmp_path / "cache")
    first = cache.write(tree, tmp_path / "one")
    [blob] = (tmp_path / "cache").glob("*.blob")
    again = cache.write(tree, tmp_path / "two")
    assert again == first and os.stat(tmp_path / "two").st_ino == os.stat(blob).st_ino  # linked, not tarred
    # a chmod (ctime), a rewrite with the same mtime, an xattr: each is a miss, and replaces the entry
    for change in (
        lambda: os.chmod(tree / "etc" / "conf", 0o600),
        lambda: ((tree / "opaque" / "only").write_text("ONLY\n"), os.utime(tree / "opaque" / "only", (1, 1_600_000_000))),
        lambda: os.setxattr(tree / "bin" / "tool", "user.note", b"new"),
    ):
        change()
        out = tmp_path / f"blob-{len(list(tmp_path.iterdir()))}"
        fresh = cache.write(tree, out)
        assert fresh.diff_id != first.diff_id and fresh == write_layer(tree, tmp_path / "check")
        (tmp_path / "check").unlink()
        assert len(list((tmp_path / "cache").glob("*.blob"))) == 1
        first = fresh
    # a folder that is gone takes its entry with it
    shutil.rmtree(tree)
    assert cache.drop_gone() == 1 and list((tmp_path / "cache").iterdir()) == []


def test_a_layer_path_that_is_a_symlink_is_fingerprinted_by_its_content(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tmp_path / "link").symlink_to(tree)
    cache = LayerCache(tmp_path / "cache")
    first = cache.write(tmp_path / "link", tmp_path / "one")
    assert first == write_layer(tree, tmp_path / "direct")
    (tree / "etc" / "conf").write_text("changed\n")
    assert cache.write(tmp_path / "link", tmp_path / "two").diff_id != first.diff_id
