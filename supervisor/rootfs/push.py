"""Pushing an image: a unit's layer folders (or a stored image's layers) are
tarred into a scratch OCI layout under state_dir/pushes with the image config
the unit stands for (imagewrite.py), then skopeo copies the layout to the
registry. The scratch layout is removed whatever happens.

skopeo is the transport, with the TLS and auth rules of a pull (pull.py:
insecure_registries, certs_dir, auth_file; loopback without TLS) and
`--preserve-digests`, so what lands is the manifest written here: the same
layers and config give the same digest push after push (layertar.py). A
folder pushed before and unchanged since is not tarred again (layercache.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from supervisor.rootfs import imagewrite
from supervisor.rootfs.errors import ImageError
from supervisor.rootfs.layercache import LayerCache
from supervisor.rootfs.layertar import write_layer
from supervisor.rootfs.oci import BLOBS_DIR, INDEX_FILE, OCI_LAYOUT_FILE, ImageConfig, host_arch
from supervisor.rootfs.pull import SKOPEO, PullSettings, registry_options, run_skopeo
from supervisor.rootfs.reference import Reference, ReferenceError, parse_reference
from supervisor.rootfs.source import image_source, is_layout
from supervisor.rootfs.store import LayerStore
from supervisor.runtime.reaper import Reaper
from supervisor.units.model import Unit

log = structlog.get_logger()

PUSHES_DIR = "pushes"
CACHE_DIR = "cache"  # under PUSHES_DIR: layercache.py
LAYOUT_TAG = "push"  # the one tag of the scratch layout


@dataclass(frozen=True)
class PushSource:
    """What a push sends: layer folders (lowest first) and the config."""

    what: str  # 'unit "web"', an image's name: for messages
    layers: tuple[Path, ...]
    config: ImageConfig


@dataclass(frozen=True)
class PushResult:
    reference: str  # the destination as given
    digest: str  # the manifest digest the registry has

    def to_json(self) -> dict[str, str]:
        return {"reference": self.reference, "digest": self.digest}


def parse_destination(destination: str) -> Reference:
    """REGISTRY/NAME[:TAG] (":latest" when left out); a digest is refused: the
    push makes one. ReferenceError (a ValueError) with docker's rules."""
    ref = parse_reference(destination)
    if ref.digest is not None:
        raise ValueError("expected REGISTRY/NAME:TAG, not a digest (the push makes one)")
    return ref


def skopeo_push_argv(
    layout: Path, dest: Reference, settings: PullSettings, authfile: Path | None, tls_verify: bool | None, digestfile: Path
) -> list[str]:
    """The skopeo command that copies the scratch layout to `dest` (pure).
    `tls_verify` None: the pull's rules; False: no TLS check; True: checked
    even on loopback."""
    options = registry_options(dest, settings, authfile, "--dest-")
    if tls_verify is not None:
        options = [o for o in options if not o.startswith("--dest-tls-verify=")]
        if not tls_verify:
            options = [o for o in options if not o.startswith("--dest-cert-dir=")]
        options.insert(0, f"--dest-tls-verify={'true' if tls_verify else 'false'}")
    return [
        SKOPEO, "copy", "--quiet", "--preserve-digests", f"--digestfile={digestfile}", *options,
        f"oci:{layout}:{LAYOUT_TAG}", f"docker://{dest}",
    ]  # fmt: skip


def source_of_unit(unit: Unit, store: LayerStore) -> PushSource:
    """A unit's layers and the config that runs what it runs (blocking: the
    store may import the unit's layout image). ImageError when it has none."""
    what = f'unit "{unit.name}"'
    rootfs = unit.rootfs
    if rootfs is None:
        raise ImageError(unit.file, f"{what} runs on the host's root ([rootfs] is absent): no layers to push")
    if rootfs.image is not None:
        image = store.image(rootfs.image)
        layers = tuple(store.layer_path(layer) for layer in image.layers)
        return PushSource(what, layers, imagewrite.config_for_unit(unit, image.config))
    return PushSource(what, tuple(rootfs.layers), imagewrite.config_for_unit(unit))


def source_of_image(ref: str, store: LayerStore) -> PushSource:
    """A stored image, by a name it was pulled or imported under (as typed or
    canonical), or its manifest digest."""
    try:
        image = store.find(ref)
    except ImageError:
        try:
            canonical = image_source(ref, Path("/"))
        except ValueError:
            raise ImageError(ref, "no such unit, and no such image in the store") from None
        try:
            image = store.find(canonical) if not is_layout(canonical) else store.image(canonical)
        except (ImageError, OSError):
            raise ImageError(ref, "no such unit, and no such image in the store (supctl image list)") from None
    missing = [layer for layer in image.layers if not store.has_layer(layer)]
    if missing:
        raise ImageError(image.name, f"layer {missing[0]} is missing from the store (pull or import it again)")
    return PushSource(image.name, tuple(store.layer_path(layer) for layer in image.layers), image.config)


def write_layout(source: PushSource, layout: Path, cache: LayerCache | None = None) -> str:
    """The OCI layout of `source` in the empty folder `layout`; its manifest
    digest (blocking). With a cache, unchanged folders are not tarred again."""
    blobs = layout / BLOBS_DIR / "sha256"
    blobs.mkdir(parents=True)
    layers: list[imagewrite.Blob] = []
    diff_ids: list[str] = []
    newest = 0
    for index, folder in enumerate(source.layers):
        tmp = blobs / f".layer-{index}"
        try:
            blob = cache.write(folder, tmp) if cache is not None else write_layer(folder, tmp)
        except OSError as err:
            inside = f" {err.filename}" if err.filename and err.filename != str(folder) else ""
            raise ImageError(folder, f"{source.what}: layer {index}:{inside} {err.strerror or err}") from None
        final = blobs / blob.digest.split(":", 1)[1]
        if final.exists():
            tmp.unlink()  # two equal layers are one blob
        else:
            os.rename(tmp, final)
        layers.append(imagewrite.layer_blob(blob.digest, blob.size))
        diff_ids.append(blob.diff_id)
        newest = max(newest, blob.newest_mtime)
    # "created" from the content, never the clock: same layers, same digest
    created = imagewrite.rfc3339(newest) if newest else None
    config = imagewrite.config_json(source.config, diff_ids, created, host_arch())
    config_blob = imagewrite.config_blob(config)
    manifest = imagewrite.manifest_json(config_blob, layers)
    manifest_blob = imagewrite.manifest_blob(manifest)
    for blob, data in ((config_blob, config), (manifest_blob, manifest)):
        (blobs / blob.digest.split(":", 1)[1]).write_bytes(data)
    (layout / INDEX_FILE).write_bytes(imagewrite.index_json(manifest_blob, LAYOUT_TAG))
    (layout / OCI_LAYOUT_FILE).write_bytes(imagewrite.OCI_LAYOUT_JSON)
    return manifest_blob.digest


class Pusher:
    def __init__(
        self, state_dir: Path, store: LayerStore, reaper: Reaper, settings: PullSettings, limiter: anyio.CapacityLimiter
    ) -> None:
        self.scratch_root = Path(state_dir) / PUSHES_DIR
        self.cache = LayerCache(self.scratch_root / CACHE_DIR)
        self.store = store
        self.reaper = reaper
        self.settings = settings
        self.limiter = limiter
        self._scratch_lock = anyio.Lock()
        self._swept = False

    def _new_scratch(self) -> Path:
        """A scratch dir; before the first one, the ones a killed supd left
        (no push of this supd can be running yet: callers hold the lock)."""
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            for leftover in self.scratch_root.glob("push-*"):
                shutil.rmtree(leftover, ignore_errors=True)
                log.info("push_scratch_removed", dir=str(leftover))
            self._swept = True
        return Path(tempfile.mkdtemp(prefix="push-", dir=self.scratch_root))

    def _write_layout(self, source: PushSource, layout: Path) -> str:
        dropped = self.cache.drop_gone()
        if dropped:
            log.info("push_cache_dropped", entries=dropped)
        return write_layout(source, layout, self.cache)

    async def push(
        self, source: PushSource, destination: str, authfile: Path | None = None, tls_verify: bool | None = None
    ) -> PushResult:
        """Build the layout and copy it to `destination`. ImageError naming
        the destination and skopeo's cause."""
        try:
            dest = parse_destination(destination)
        except ReferenceError as err:  # names the reference itself
            raise ImageError("destination", str(err)) from None
        except ValueError as err:
            raise ImageError(destination, str(err)) from None
        async with self._scratch_lock:
            scratch = await anyio.to_thread.run_sync(self._new_scratch)
        try:
            log.info("image_push_started", source=source.what, destination=str(dest))
            layout = scratch / "layout"
            written = await anyio.to_thread.run_sync(self._write_layout, source, layout, limiter=self.limiter)
            digestfile = scratch / "digest"
            argv = skopeo_push_argv(layout, dest, self.settings, authfile, tls_verify, digestfile)
            await run_skopeo(self.reaper, destination, argv, scratch / "copy.log")
            pushed = await anyio.to_thread.run_sync(lambda: digestfile.read_text().strip())
            if pushed != written:  # --preserve-digests: skopeo fails rather than convert
                log.warning("image_push_digest_changed", written=written, pushed=pushed)
            log.info("image_pushed", source=source.what, destination=str(dest), digest=pushed)
            return PushResult(destination, pushed)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)


__all__: Sequence[str] = [
    "PushSource", "PushResult", "Pusher", "parse_destination", "skopeo_push_argv", "source_of_unit",
    "source_of_image", "write_layout",
]  # fmt: skip
