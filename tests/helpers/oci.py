"""Build small, real OCI image layouts with Debian's `umoci` for tests and benchmarks.

`build_busybox_image(layout)` makes a layout with one tag and three layers:

1. the busybox rootfs from tests/helpers/busybox.py, plus /www/index.html and
   /opt/old/{a,b} (made by `umoci repack`);
2. /etc/hostname deleted and /etc/motd added (`umoci repack` writes the
   deletion as the OCI whiteout `etc/.wh.hostname`);
3. a hand-made tar added with `umoci raw add-layer`: /opt/old made opaque
   (`opt/old/.wh..wh..opq`) with a new file /opt/old/c, and /www/index.html
   whited out (`www/.wh.index.html`).

So in the image: /etc/hostname and /www/index.html are absent, /etc/motd is
there, /opt/old holds only `c`.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from supervisor.rootfs.oci import MEDIA_LAYER_ZSTD
from tests.helpers.busybox import make_busybox_rootfs

UMOCI = "umoci"


@dataclass(frozen=True)
class BuiltImage:
    layout: Path
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.layout}:{self.tag}"


PRESENT = ("/bin/busybox", "/bin/sh", "/etc/passwd", "/etc/motd", "/opt/old/c")
ABSENT = ("/etc/hostname", "/www/index.html", "/opt/old/a", "/opt/old/b")


def umoci(*args: str) -> None:
    subprocess.run([UMOCI, *args], check=True, capture_output=True, text=True)


def layer_tar(entries: dict[str, bytes | None]) -> bytes:
    """An uncompressed layer tar: name → file content, or None for a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.mtime = int(time.time())
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def add_raw_layer(layout: Path, tag: str, entries: dict[str, bytes | None], work: Path, new_tag: str | None = None) -> None:
    work.mkdir(parents=True, exist_ok=True)
    tar_path = work / f"layer-{time.monotonic_ns()}.tar"
    tar_path.write_bytes(layer_tar(entries))
    args = ["raw", "add-layer", "--image", f"{layout}:{tag}"]
    if new_tag:
        args += ["--tag", new_tag]
    umoci(*args, str(tar_path))
    tar_path.unlink()


def new_busybox_base(layout: Path, tag: str, work: Path) -> None:
    """A layout (created if needed) whose `tag` has the busybox base layer only."""
    if not (layout / "oci-layout").exists():
        umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:{tag}")
    bundle = work / f"bundle-{tag}"
    umoci("unpack", "--image", f"{layout}:{tag}", str(bundle))
    rootfs = bundle / "rootfs"
    make_busybox_rootfs(rootfs)
    (rootfs / "www" / "index.html").write_text("<h1>busybox</h1>\n")
    (rootfs / "opt" / "old").mkdir(parents=True)
    (rootfs / "opt" / "old" / "a").write_text("a\n")
    (rootfs / "opt" / "old" / "b").write_text("b\n")
    umoci("repack", "--image", f"{layout}:{tag}", str(bundle))
    shutil.rmtree(bundle)


def build_busybox_image(layout: Path, tag: str = "latest", work: Path | None = None) -> BuiltImage:
    """Create (or add `tag` to) an OCI layout; see the module doc for its content."""
    work = work or layout.parent / f"{layout.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    new_busybox_base(layout, tag, work)

    bundle = work / f"bundle-{tag}"
    umoci("unpack", "--image", f"{layout}:{tag}", str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "etc" / "hostname").unlink()
    (rootfs / "etc" / "motd").write_text("layered\n")
    umoci("repack", "--image", f"{layout}:{tag}", str(bundle))
    shutil.rmtree(bundle)

    add_raw_layer(
        layout,
        tag,
        {
            "opt/": None,
            "opt/old/": None,
            "opt/old/.wh..wh..opq": b"",
            "opt/old/c": b"c\n",
            "www/": None,
            "www/.wh.index.html": b"",
        },
        work,
    )
    shutil.rmtree(work, ignore_errors=True)
    return BuiltImage(layout=layout, tag=tag)


# --- hand edits of a layout (what umoci cannot write) -------------------------------


def _write_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def _read_blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def rewrite_image(layout: Path, tag: str, edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    """Let `edit(manifest, config)` change the JSON of `tag`'s manifest and
    config in place; the new blobs are written and the tag points at them."""
    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads(_read_blob(layout, entry["digest"]))
    config = json.loads(_read_blob(layout, manifest["config"]["digest"]))
    edit(manifest, config)
    manifest["config"]["digest"], manifest["config"]["size"] = _write_blob(layout, json.dumps(config).encode())
    entry["digest"], entry["size"] = _write_blob(layout, json.dumps(manifest).encode())
    (layout / "index.json").write_text(json.dumps(index))


def set_healthcheck(layout: Path, tag: str, healthcheck: dict[str, Any]) -> None:
    """Docker's Healthcheck in the image config (umoci has no flag for it)."""
    rewrite_image(layout, tag, lambda _manifest, config: config.setdefault("config", {}).update(Healthcheck=healthcheck))


def add_zstd_layer(layout: Path, tag: str, entries: dict[str, bytes | None]) -> str:
    """A layer compressed with zstd (media type ...tar+zstd) on top of `tag`;
    returns the blob's digest."""
    tar = layer_tar(entries)
    blob, size = _write_blob(layout, zstandard.ZstdCompressor(level=3).compress(tar))

    def edit(manifest: dict[str, Any], config: dict[str, Any]) -> None:
        manifest["layers"].append({"mediaType": MEDIA_LAYER_ZSTD, "digest": blob, "size": size})
        config["rootfs"]["diff_ids"].append(f"sha256:{hashlib.sha256(tar).hexdigest()}")

    rewrite_image(layout, tag, edit)
    return blob
