"""systemd-style slice and scope names (pure).

A slice name encodes its parents: "supd-web-a.slice" lives in "supd-web.slice",
which lives in "supd.slice" (systemd.slice(5)).
"""

from __future__ import annotations

SLICE_SUFFIX = ".slice"
SCOPE_SUFFIX = ".scope"
ROOT_SLICE = "supd.slice"
SCOPE_PREFIX = "supd-"


class SliceNameError(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"slice {name!r}: {reason}")


def expand_slice(name: str) -> list[str]:
    """The chain of slices from the top down to `name`:
    "supd-web-a.slice" -> ["supd.slice", "supd-web.slice", "supd-web-a.slice"].
    The root slice "-.slice" expands to []."""
    if name == "-.slice":
        return []
    if not name.endswith(SLICE_SUFFIX):
        raise SliceNameError(name, 'expected a name ending in ".slice"')
    stem = name[: -len(SLICE_SUFFIX)]
    if "/" in stem:
        raise SliceNameError(name, 'expected no "/"')
    parts = stem.split("-")
    if any(p == "" for p in parts):
        raise SliceNameError(name, 'expected no empty component (no leading, trailing or double "-")')
    return ["-".join(parts[: i + 1]) + SLICE_SUFFIX for i in range(len(parts))]


def slice_name(slice_key: str | None) -> str:
    """The unit file's `slice = "web"` -> "supd-web.slice"; None -> "supd.slice"."""
    if slice_key is None:
        return ROOT_SLICE
    name = f"supd-{slice_key}{SLICE_SUFFIX}"
    expand_slice(name)  # validates
    return name


def scope_name(unit: str) -> str:
    """The scope of unit "web": "supd-web.scope"."""
    if not unit or "/" in unit:
        raise ValueError(f"unit name {unit!r}: expected a non-empty name without '/'")
    return f"{SCOPE_PREFIX}{unit}{SCOPE_SUFFIX}"


def unit_of_scope(scope: str) -> str | None:
    """Inverse of scope_name: "supd-web.scope" -> "web"; None for anything else."""
    if scope.startswith(SCOPE_PREFIX) and scope.endswith(SCOPE_SUFFIX):
        unit = scope[len(SCOPE_PREFIX) : -len(SCOPE_SUFFIX)]
        return unit or None
    return None


def slice_dirs(slice: str) -> list[str]:
    """Directory components of a slice under a cgroup root, like systemd lays them
    out: "supd-web.slice" -> ["supd.slice", "supd-web.slice"]."""
    return expand_slice(slice)
