"""Path values of unit files: host paths resolved against the unit file's
folder, and absolute paths inside the container.

Pure string work: nothing here looks at the filesystem (existence is checked
when the unit starts), apart from `os.path.abspath` knowing the cwd for a
unit file given by a relative path.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

HOST_PATH_EXPECTED = "a non-empty path (absolute, or relative to the unit file's folder)"
CONTAINER_PATH_EXPECTED = 'an absolute path inside the container like "/www", without ".."'


def resolve_host_path(value: object, unit_dir: Path) -> Path:
    """`value` made absolute against `unit_dir` and normalised ("a/../b" -> "b")."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(HOST_PATH_EXPECTED)
    joined = os.path.join(os.path.abspath(unit_dir), value)
    return Path(_collapse_leading_slashes(os.path.normpath(joined)))


def container_path(value: object) -> str:
    """A normalised absolute path inside the container.

    ".." is refused rather than normalised away: inside the container it
    would point somewhere other than what the author likely meant.
    """
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ValueError(CONTAINER_PATH_EXPECTED)
    if ".." in value.split("/"):
        raise ValueError(CONTAINER_PATH_EXPECTED)
    return _collapse_leading_slashes(posixpath.normpath(value))


def _collapse_leading_slashes(path: str) -> str:
    # POSIX lets normpath keep exactly two leading slashes; the kernel doesn't care.
    if path.startswith("//"):
        return "/" + path.lstrip("/")
    return path
