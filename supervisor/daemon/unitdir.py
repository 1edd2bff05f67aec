"""The units folder: scan it, and watch it for changes (watchfiles, inotify)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import watchfiles

from supervisor.units.model import Unit
from supervisor.units.parse import UnitFileError, load_unit

SUFFIX = ".toml"


def is_unit_file_name(name: str) -> bool:
    """Editors' temporary files (`.x.swp`, `x~`, `.#x`, dotfiles) are not units."""
    return name.endswith(SUFFIX) and not name.startswith((".", "#")) and not name.endswith("~")


@dataclass(frozen=True)
class Loaded:
    """One unit file's outcome: a Unit, or the error that makes it state `error`."""

    name: str
    file: Path
    unit: Unit | None
    error: str | None


def load_one(path: Path) -> Loaded:
    name = path.name[: -len(SUFFIX)]
    try:
        return Loaded(name, path, load_unit(path), None)
    except UnitFileError as e:
        return Loaded(name, path, None, str(e))
    except OSError as e:  # e.g. a symlink loop, a file that vanished mid-read
        return Loaded(name, path, None, f"{path}: cannot read unit file: {e.strerror or e}")


def scan(units_dir: Path) -> dict[str, Loaded]:
    found: dict[str, Loaded] = {}
    try:
        entries = sorted(os.scandir(units_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return found
    for entry in entries:
        if is_unit_file_name(entry.name):
            loaded = load_one(Path(entry.path))
            found[loaded.name] = loaded
    return found


async def watch(units_dir: Path, stop: anyio.Event) -> AsyncIterator[None]:
    """Yield once per batch of relevant changes in `units_dir` (debounced)."""

    def relevant(_change: watchfiles.Change, path: str) -> bool:
        return is_unit_file_name(os.path.basename(path))

    units_dir.mkdir(parents=True, exist_ok=True)
    async for _changes in watchfiles.awatch(
        units_dir, watch_filter=relevant, debounce=150, step=100, stop_event=stop, recursive=False
    ):
        yield None
