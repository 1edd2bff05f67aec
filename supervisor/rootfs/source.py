"""Where an image comes from: an OCI layout "DIR:TAG" imported in place, or a
source skopeo copies (a registry, an archive, a `dir:`) before the store
imports it.

`image_source(value, base)` turns what a user wrote (a unit's
`[rootfs].image`, `supctl image pull REF`) into one canonical string:

    /abs/layout:TAG             an OCI layout (what `[rootfs].image` always meant)
    docker://REGISTRY/REPO:TAG  a registry reference, normalised (reference.py)
    oci-archive:/abs/x.tar[:TAG], docker-archive:/abs/x.tar, dir:/abs/dir

Explicit transports are always accepted ("oci:DIR:TAG" is a layout). Without
one, a value naming an existing OCI layout (relative to `base` or absolute,
or starting with "/", "./" or "../") stays a layout, as before registries
existed; anything else is a registry reference. Only that one existence test
touches the file system.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from supervisor.rootfs.reference import ReferenceError, parse_reference

DOCKER = "docker://"
ARCHIVE_TRANSPORTS = ("oci-archive:", "docker-archive:", "dir:")
LAYOUT_TRANSPORT = "oci:"
_LAYOUT_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
TRANSPORTS = ("docker://", "oci:", "oci-archive:", "docker-archive:", "dir:")


class SourceError(ValueError):
    """A value that names no image source; the message says which and why."""


def _absolute(path: str, base: Path) -> str:
    if not path or "\0" in path:
        raise SourceError(f'"{path}": expected a path')
    return os.path.normpath(os.path.join(os.path.abspath(base), path))


def _layout(value: str, base: Path) -> str:
    directory, colon, tag = value.rpartition(":")
    if not colon or not directory or not _LAYOUT_TAG.fullmatch(tag):
        raise SourceError(f'"{value}": expected an OCI layout and a tag, "DIR:TAG" (a tag is up to 128 letters, digits, ".", "_" or "-")')
    return f"{_absolute(directory, base)}:{tag}"


def _looks_like_layout(value: str, base: Path) -> bool:
    if value.startswith(("/", "./", "../")):
        return True
    directory = value.rpartition(":")[0]
    return bool(directory) and os.path.isfile(os.path.join(_absolute(directory, base), "oci-layout"))


def image_source(value: str, base: Path) -> str:
    """The canonical source string for `value` (see the module doc). Raises
    SourceError, or ReferenceError for a bad registry reference."""
    if value.startswith(DOCKER):
        return DOCKER + str(parse_reference(value[len(DOCKER) :]))
    if value.startswith(LAYOUT_TRANSPORT):
        return _layout(value[len(LAYOUT_TRANSPORT) :], base)
    for transport in ARCHIVE_TRANSPORTS:
        if value.startswith(transport):
            rest = value[len(transport) :]
            path, tag = rest, ""
            if transport == "oci-archive:":
                head, colon, tail = rest.rpartition(":")
                if colon and head and "/" not in tail:
                    path, tag = head, f":{tail}"
            return f"{transport}{_absolute(path, base)}{tag}"
    if _looks_like_layout(value, base):
        return _layout(value, base)
    return DOCKER + str(parse_reference(value))


def is_layout(source: str) -> bool:
    """A canonical source that is an OCI layout imported in place (no skopeo)."""
    return source.startswith("/")


def registry_reference(source: str) -> str | None:
    """The reference of a `docker://` source, else None."""
    return source[len(DOCKER) :] if source.startswith(DOCKER) else None


__all__ = ["ReferenceError", "SourceError", "image_source", "is_layout", "registry_reference", "TRANSPORTS"]
