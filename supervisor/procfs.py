"""Reading /proc: the one place supd parses what the kernel says about
processes and the machine.

The boot id is read here and only here: the daemon reads it once at start and
hands it on as a plain value, so every decision that depends on "did the
machine reboot?" takes it as an input and is tested without /proc.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")
# A random UUID the kernel makes at every boot (random(4)).
BOOT_ID = PROC / "sys" / "kernel" / "random" / "boot_id"


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id, or "" when the kernel does not tell (then every record
    counts as being from this boot: the pid + start time check still guards
    against adopting a stranger)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
