"""Per-unit output capture: `state_dir/logs/<unit>.log`.

supd opens the file and hands the descriptor to the unit's process as its
stdout and stderr, so output keeps flowing (and is kept) while supd itself
restarts. Because the process writes the file directly, rotation is
"copytruncate": the current content is copied to `<unit>.log.1` and the file
is truncated in place; writers opened with O_APPEND continue at the new end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

LOG_MODE = 0o640


def log_path(state_dir: Path, unit: str) -> Path:
    return state_dir / "logs" / f"{unit}.log"


def open_for_unit(state_dir: Path, unit: str) -> int:
    path = log_path(state_dir, unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)


def rotate_if_needed(path: Path, max_bytes: int, keep: int) -> bool:
    """Rotate `path` when it has grown past `max_bytes`. Returns True if it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True
