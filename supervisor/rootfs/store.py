"""The content-addressed layer store under `state_dir/layers`.

    layers/sha256/<hex>      one unpacked layer (read-only by convention), keyed by
                             its diff id (uncompressed digest), else its blob digest
    layers/tmp/<random>      layers being unpacked; renamed into place when complete
    layers/l/<short id>      short symlinks to layer dirs (see overlay.py)
    images/<hex>.json        one record per imported image, keyed by manifest digest

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from supervisor.rootfs.errors import ImageError
from supervisor.rootfs.oci import DIGEST_RE, ImageConfig, OciLayout, ResolvedImage, unpack_layer

log = structlog.get_logger()

LAYERS_DIR = "layers"
IMAGES_DIR = "images"
TMP_DIR = "tmp"
# a temp dir this old is from an import that died, not one in progress
STALE_TMP_SECONDS = 3600.0


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
        )


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
        unpacked = sum(self._import_layer(oci, resolved, i) for i in range(len(resolved.layer_ids)))
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

    def find(self, name: str) -> Image | None:
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
            found = self.find(image_ref)
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

    def remove_image(self, name_or_digest: str) -> Image:
        """Forget an image (by "DIR:TAG" or manifest digest); its layers stay
        until `gc()`."""
        for image in self.images():
            if name_or_digest == image.digest or name_or_digest in image.refs:
                self._record_path(image.digest).unlink()
                log.info("image_removed", image=image.name, digest=image.digest)
                return image
        raise ImageError(self.images_dir, f'no image "{name_or_digest}" in the store')

    def gc(self, now: float | None = None) -> list[str]:
        """Remove layers no image record uses, and temp dirs of dead imports.
        Returns the removed layer ids. Call it only when no unit that uses a
        removed image is running (overlay must not lose a lower layer)."""
        used = {layer for image in self.images() for layer in image.layers}
        removed: list[str] = []
        for algorithm_dir in sorted(self.layers_dir.glob("sha*")):
            for layer_dir in sorted(algorithm_dir.iterdir()):
                layer_id = f"{algorithm_dir.name}:{layer_dir.name}"
                if DIGEST_RE.match(layer_id) and layer_id not in used:
                    shutil.rmtree(layer_dir)
                    removed.append(layer_id)
        tmp_root = self.layers_dir / TMP_DIR
        wall = time.time() if now is None else now
        if tmp_root.is_dir():
            for tmp in tmp_root.iterdir():
                if wall - tmp.lstat().st_mtime > STALE_TMP_SECONDS:
                    shutil.rmtree(tmp)
        if removed:
            log.info("layers_removed", count=len(removed))
        return removed
