"""The content-addressed layer store under `state_dir/layers`.

    layers/sha256/<hex>      one unpacked layer (read-only by convention), keyed by
                             its diff id (uncompressed digest), else its blob digest
    layers/tmp/<random>      layers being unpacked; renamed into place when complete
    layers/l/<short id>      short symlinks to layer dirs (see overlay.py)
    layers/trash/<random>    layers and temp dirs being removed
    images/<hex>.json        one record per imported image, keyed by manifest digest

Removal is crash-safe: a layer leaves its place by one rename into the trash,
then the trash is emptied; an image record is removed (one unlink) before its
layers. A supd killed at any point leaves either a whole layer in place or a
dir in the trash, which `recover()` (at start) empties. A record whose layer is
missing (removed by hand) is reported by `recover()` and re-imported from its
layout on next use (`image()`).

Importing is idempotent and safe to run concurrently (threads, processes):
a layer is unpacked into a private temp dir inside the store and renamed into
place; whoever renames second finds it there and drops its copy. All methods
block (file I/O): the daemon calls them through `anyio.to_thread`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from supervisor import failpoints
from supervisor.rootfs.errors import ImageError
from supervisor.rootfs.oci import DIGEST_RE, ImageConfig, OciLayout, ResolvedImage, unpack_layer

log = structlog.get_logger()

LAYERS_DIR = "layers"
IMAGES_DIR = "images"
TMP_DIR = "tmp"
TRASH_DIR = "trash"
# a temp dir this old is from an import that died, not one in progress
STALE_TMP_SECONDS = 3600.0
# layers unpacked at once by one import: decompression (zlib, zstd) and file
# writes release the GIL; tar parsing does not, so more than the cores buys little
UNPACK_WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Image:
    name: str  # the "DIR:TAG" reference it was last imported under
    tag: str
    digest: str  # manifest digest: the image's identity
    layers: tuple[str, ...]  # layer ids, lowest first
    size: int  # bytes of the config and layer blobs, as the manifest lists them
    created: str | None  # from the image config (RFC 3339)
    config: ImageConfig
    refs: tuple[str, ...] = ()  # every "DIR:TAG" that resolved to this digest
    # the blob size of each layer, as the manifest lists it (empty in records
    # written before it was kept: their shared size is unknown)
    layer_sizes: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "digest": self.digest,
            "layers": list(self.layers),
            "size": self.size,
            "created": self.created,
            "config": self.config.to_json(),
            "refs": list(self.refs),
            "layer_sizes": list(self.layer_sizes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Image:
        return cls(
            name=data["name"],
            tag=data["tag"],
            digest=data["digest"],
            layers=tuple(data["layers"]),
            size=int(data["size"]),
            created=data.get("created"),
            config=ImageConfig.from_json(data.get("config") or {}),
            refs=tuple(data.get("refs") or (data["name"],)),
            layer_sizes=tuple(int(n) for n in data.get("layer_sizes") or ()),
        )


@dataclass(frozen=True)
class Removal:
    """What a removal took away: image records, layers, and the bytes freed."""

    images: tuple[Image, ...] = ()
    layers: tuple[str, ...] = ()
    tmp_dirs: int = 0
    freed: int = 0  # bytes on disk (allocated blocks, hardlinks counted once)

    def to_json(self) -> dict[str, Any]:
        return {
            "images": [{"name": i.name, "digest": i.digest} for i in self.images],
            "layers": list(self.layers),
            "tmp_dirs": self.tmp_dirs,
            "freed": self.freed,
        }


@dataclass(frozen=True)
class Recovery:
    """What `recover()` found at start."""

    trash_emptied: int = 0  # dirs a killed removal had left in the trash
    broken: tuple[tuple[str, str], ...] = ()  # (image name, missing layer id)


def disk_usage(path: Path) -> int:
    """Bytes a tree takes on disk, each inode once (layers keep hardlinks)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames, ""):
            try:
                st = os.lstat(os.path.join(dirpath, name) if name else dirpath)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
    return total


def parse_image_ref(ref: str) -> tuple[Path, str]:
    """`"/abs/layout:tag"` → (layout dir, tag) (pure)."""
    directory, sep, tag = ref.rpartition(":")
    if not sep or not directory or not tag or "/" in tag:
        raise ImageError(ref, 'expected an image reference "DIR:TAG" (an OCI image layout and a tag)')
    if not directory.startswith("/"):
        raise ImageError(ref, f'expected an absolute layout directory, got "{directory}"')
    return Path(directory), tag


def _digest_hex(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise ImageError(digest, 'expected a digest "sha256:<64 hex>"')
    algorithm, hexdigest = digest.split(":", 1)
    return hexdigest if algorithm == "sha256" else f"{algorithm}-{hexdigest}"


class LayerStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.layers_dir = self.state_dir / LAYERS_DIR
        self.images_dir = self.state_dir / IMAGES_DIR

    # --- layers ------------------------------------------------------------------

    def layer_path(self, layer_id: str) -> Path:
        if not DIGEST_RE.match(layer_id):
            raise ImageError(self.layers_dir, f'expected a layer id "sha256:<64 hex>", got {layer_id!r:.80}')
        algorithm, hexdigest = layer_id.split(":", 1)
        return self.layers_dir / algorithm / hexdigest

    def has_layer(self, layer_id: str) -> bool:
        return self.layer_path(layer_id).is_dir()

    def _import_layer(self, layout: OciLayout, resolved: ResolvedImage, index: int) -> bool:
        """Unpack layer `index` unless the store has it; True when it unpacked."""
        layer_id = resolved.layer_ids[index]
        final = self.layer_path(layer_id)
        if final.is_dir():
            return False
        desc = resolved.manifest.layers[index]
        diff_id = resolved.diff_ids[index] if len(resolved.diff_ids) == len(resolved.manifest.layers) else None
        tmp_root = self.layers_dir / TMP_DIR
        tmp_root.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix="layer-", dir=tmp_root))
        try:
            # the layer root's mode shows as "/" when it is the top layer; mkdtemp's 0700
            # would lock non-root users out (a "./" entry in the tar overrides this)
            os.chmod(tmp, 0o755)
            unpack_layer(layout, desc, diff_id, tmp)
            try:
                os.rename(tmp, final)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                log.info("layer_import_raced", layer=layer_id)  # another import won; same content
                return False
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        log.info("layer_imported", layer=layer_id, blob=desc.digest, seconds=round(time.monotonic() - started, 3))
        return True

    def _import_layers(self, layout: OciLayout, resolved: ResolvedImage) -> list[bool]:
        """Unpack the missing layers side by side: each is its own temp dir and
        rename, so order does not matter. The first error wins once all ended
        (no half-written temp dir outlives its worker)."""
        count = len(resolved.layer_ids)
        workers = min(count, UNPACK_WORKERS)
        if workers <= 1:
            return [self._import_layer(layout, resolved, i) for i in range(count)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unpack") as pool:
            futures = [pool.submit(self._import_layer, layout, resolved, i) for i in range(count)]
            wait(futures)
        return [f.result() for f in futures]

    # --- images ----------------------------------------------------------------------

    def _record_path(self, digest: str) -> Path:
        return self.images_dir / f"{_digest_hex(digest)}.json"

    def _load_record(self, digest: str) -> Image | None:
        try:
            return Image.from_json(json.loads(self._record_path(digest).read_text()))
        except FileNotFoundError:
            return None

    def _write_record(self, image: Image) -> None:
        self.images_dir.mkdir(parents=True, exist_ok=True)
        path = self._record_path(image.digest)
        fd, tmp = tempfile.mkstemp(prefix=".image-", dir=self.images_dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(image.to_json(), f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def import_image(self, layout: Path, tag: str, name: str | None = None) -> Image:
        """Import `tag` from an OCI layout: unpack the layers the store lacks,
        record the image. Re-importing the same manifest is (nearly) a no-op.
        `name` is what the image is known by when the layout is only a pull's
        scratch copy (a source string, source.py), else "DIR:TAG"."""
        oci = OciLayout(layout)
        resolved = oci.resolve(tag)
        ref = name or f"{layout}:{tag}"
        unpacked = sum(self._import_layers(oci, resolved))
        previous = self._load_record(resolved.manifest.digest)
        refs = tuple(dict.fromkeys((*(previous.refs if previous else ()), ref)))
        image = Image(
            name=ref,
            tag=tag,
            digest=resolved.manifest.digest,
            layers=resolved.layer_ids,
            size=resolved.size,
            created=resolved.created,
            config=resolved.config,
            refs=refs,
            layer_sizes=tuple(d.size for d in resolved.manifest.layers),
        )
        if image != previous:
            self._write_record(image)
        if name is not None:
            self._move_name(name, image.digest)
        log.info("image_imported", image=ref, digest=image.digest, layers=len(image.layers), unpacked=unpacked)
        return image

    def _move_name(self, name: str, digest: str) -> None:
        """A pulled name (a tag) names one image: drop it from the image it
        named before, so `find` never answers with a stale one."""
        for other in self.images():
            if other.digest != digest and name in other.refs:
                refs = tuple(r for r in other.refs if r != name)
                if refs:
                    self._write_record(replace(other, refs=refs, name=refs[-1]))
                else:
                    self._record_path(other.digest).unlink(missing_ok=True)

    def images(self) -> list[Image]:
        if not self.images_dir.is_dir():
            return []
        found = []
        for path in sorted(self.images_dir.glob("*.json")):
            try:
                found.append(Image.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("image_record_unreadable", file=str(path), error=str(err))
        return found

    def find_complete(self, name: str) -> Image | None:
        """The stored image last recorded under `name` (a pulled source), if
        all its layers are there."""
        for image in self.images():
            if name in image.refs and all(self.has_layer(layer) for layer in image.layers):
                return image
        return None

    def image(self, image_ref: str) -> Image:
        """The image a "DIR:TAG" names, importing it on first use; a pulled
        source (source.py) must have been pulled (pull.py) before."""
        if not image_ref.startswith("/"):
            found = self.find_complete(image_ref)
            if found is None:
                raise ImageError(image_ref, "not in the store (not pulled yet)")
            return found
        layout, tag = parse_image_ref(image_ref)
        oci = OciLayout(layout)
        digest = oci.manifest_descriptor(tag).digest
        record = self._load_record(digest)
        if record is not None and all(self.has_layer(layer) for layer in record.layers):
            return record
        return self.import_image(layout, tag)

    def resolve(self, image_ref: str) -> list[Path]:
        """Layer directories (lowest first) of the image "DIR:TAG"; imports it on
        first use. The image is identified by its manifest digest, so this only
        reads index.json and the manifest when the image is already stored."""
        return [self.layer_path(layer) for layer in self.image(image_ref).layers]

    layers_for = resolve  # the name docs/architecture.md uses

    def find(self, name_or_digest: str) -> Image:
        """The record a "DIR:TAG" or a manifest digest names."""
        for image in self.images():
            if name_or_digest == image.digest or name_or_digest in image.refs:
                return image
        raise ImageError(self.images_dir, f'no image "{name_or_digest}" in the store')

    def digest_of(self, image_ref: str) -> str | None:
        """The manifest digest "DIR:TAG" names now; None when the layout cannot
        say (gone, unreadable): then the caller goes by the names records keep."""
        try:
            layout, tag = parse_image_ref(image_ref)
            return OciLayout(layout).manifest_descriptor(tag).digest
        except (ImageError, OSError, ValueError):
            return None

    def layer_of_path(self, path: Path) -> str | None:
        """The layer id of a store layer dir (a unit's `layers = [...]` may name one)."""
        try:
            relative = Path(os.path.abspath(path)).relative_to(self.layers_dir)
        except ValueError:
            return None
        parts = relative.parts
        if len(parts) < 2:
            return None
        layer_id = f"{parts[0]}:{parts[1]}"
        return layer_id if DIGEST_RE.match(layer_id) else None

    def remove_image(self, name_or_digest: str, keep_layers: frozenset[str] = frozenset()) -> Removal:
        """Forget an image (by "DIR:TAG" or manifest digest) and remove at once
        the layers no other image record and nothing in `keep_layers` uses
        (as docker's rmi does). The record goes first: a kill in between
        leaves unused layers, which prune removes, never a record without its
        layers."""
        image = self.find(name_or_digest)
        self._record_path(image.digest).unlink()
        log.info("image_removed", image=image.name, digest=image.digest)
        still_used = {layer for other in self.images() for layer in other.layers} | keep_layers
        removed, freed = self._remove_layers([layer for layer in image.layers if layer not in still_used])
        return Removal(images=(image,), layers=tuple(removed), freed=freed)

    def prune(self, keep_layers: frozenset[str] = frozenset(), now: float | None = None) -> Removal:
        """Remove every layer no image record and nothing in `keep_layers` uses,
        and temp dirs of dead imports. The caller puts in `keep_layers` the
        layers of loaded units (overlay must not lose a lower layer)."""
        used = {layer for image in self.images() for layer in image.layers} | keep_layers
        unused = [layer for layer in self._stored_layers() if layer not in used]
        removed, freed = self._remove_layers(unused)
        tmp_dirs = 0
        tmp_root = self.layers_dir / TMP_DIR
        wall = time.time() if now is None else now
        if tmp_root.is_dir():
            for tmp in sorted(tmp_root.iterdir()):
                try:
                    if wall - tmp.lstat().st_mtime <= STALE_TMP_SECONDS:
                        continue  # maybe an import in progress
                except FileNotFoundError:
                    continue
                freed += self._discard(tmp)
                tmp_dirs += 1
        if removed or tmp_dirs:
            log.info("store_pruned", layers=len(removed), tmp_dirs=tmp_dirs, freed=freed)
        return Removal(layers=tuple(removed), tmp_dirs=tmp_dirs, freed=freed)

    def gc(self, now: float | None = None) -> list[str]:
        """Remove layers no image record uses, and temp dirs of dead imports.
        Returns the removed layer ids. Call it only when no unit that uses a
        removed image is running (overlay must not lose a lower layer)."""
        return list(self.prune(now=now).layers)

    def recover(self) -> Recovery:
        """At start: finish removals a killed supd left in the trash, and
        report records whose layers are missing (they are re-imported from
        their layout on next use)."""
        emptied = 0
        trash = self.layers_dir / TRASH_DIR
        if trash.is_dir():
            for leftover in sorted(trash.iterdir()):
                shutil.rmtree(leftover, ignore_errors=True)
                if not leftover.exists():
                    emptied += 1
                else:
                    log.warning("store_trash_not_emptied", dir=str(leftover))
        if emptied:
            log.info("store_trash_emptied", dirs=emptied)
        broken = tuple(
            (image.name, layer) for image in self.images() for layer in image.layers if not self.has_layer(layer)
        )
        for name, layer in broken:
            log.warning("image_layer_missing", image=name, layer=layer, fix="re-imported from its layout on next use")
        return Recovery(trash_emptied=emptied, broken=broken)

    def _stored_layers(self) -> list[str]:
        found = []
        for algorithm_dir in sorted(self.layers_dir.glob("sha*")):
            for layer_dir in sorted(algorithm_dir.iterdir()):
                layer_id = f"{algorithm_dir.name}:{layer_dir.name}"
                if DIGEST_RE.match(layer_id):
                    found.append(layer_id)
        return found

    def _remove_layers(self, layer_ids: list[str]) -> tuple[list[str], int]:
        removed: list[str] = []
        freed = 0
        for layer_id in layer_ids:
            path = self.layer_path(layer_id)
            if not path.is_dir():
                continue
            freed += self._discard(path)
            removed.append(layer_id)
            log.info("layer_removed", layer=layer_id)
        return removed, freed

    def _discard(self, path: Path) -> int:
        """Move `path` into the trash in one rename (it is gone from its place
        or still whole), then delete it; returns the bytes it took."""
        size = disk_usage(path)
        trash = self.layers_dir / TRASH_DIR
        trash.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix="gone-", dir=trash))
        os.rename(path, target / "d")
        failpoints.hit("store.trash")  # a test stalls here and kills supd -9
        shutil.rmtree(target)
        return size
