"""Which loaded units use which stored image, and what each image shares with
the others: `supctl image list`, and what `image rm`/`prune` must keep (pure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.rootfs.store import Image


@dataclass(frozen=True)
class UnitImage:
    """A loaded unit's `[rootfs].image` and the digest its layout names now
    (None when the layout cannot say: gone or unreadable)."""

    unit: str
    ref: str
    digest: str | None


def users_by_digest(images: Iterable[Image], units: Iterable[UnitImage]) -> dict[str, tuple[str, ...]]:
    """Image digest → the units using it. A unit uses the image its layout's
    tag names now; when the layout cannot be read, every image recorded under
    that name (rm must err on the side of refusing)."""
    images = list(images)
    users: dict[str, list[str]] = {}
    for unit in units:
        if unit.digest is not None:
            digests = [unit.digest]
        else:
            digests = [image.digest for image in images if unit.ref in image.refs]
        for digest in digests:
            users.setdefault(digest, []).append(unit.unit)
    return {digest: tuple(sorted(names)) for digest, names in users.items()}


def shared_size(image: Image, layer_counts: Mapping[str, int]) -> int | None:
    """Bytes of this image's layers another image also uses (blob sizes, as
    `size` is); None for a record without layer sizes."""
    if len(image.layer_sizes) != len(image.layers):
        return None
    return sum(size for layer, size in zip(image.layers, image.layer_sizes) if layer_counts[layer] > 1)


def image_rows(images: Iterable[Image], users: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """Each image's record with `shared_size` and `units` added."""
    images = list(images)
    counts = Counter(layer for image in images for layer in set(image.layers))
    rows = []
    for image in images:
        row = image.to_json()
        row["shared_size"] = shared_size(image, counts)
        row["units"] = list(users.get(image.digest, ()))
        rows.append(row)
    return rows


def kept_layers(
    images: Iterable[Image], users: Mapping[str, tuple[str, ...]], unit_layers: Iterable[str] = ()
) -> frozenset[str]:
    """Layers removal must keep: those of images loaded units use, and store
    layers units name directly in `[rootfs].layers`."""
    return frozenset(layer for image in images if image.digest in users for layer in image.layers) | frozenset(unit_layers)
