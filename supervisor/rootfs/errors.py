"""Errors of the rootfs package.

Both carry the data they are about (file, key, digest) and say what was
expected, so the daemon can put them in `supctl status` verbatim.
"""

from __future__ import annotations

from pathlib import Path


class ImageError(Exception):
    """An OCI image layout that cannot be imported.

    `file` is the file that was being read (index.json, a blob), `digest` the
    blob's digest when the problem is a blob (corrupt, truncated, missing)."""

    def __init__(self, file: Path | str, message: str, digest: str | None = None) -> None:
        self.file = str(file)
        self.message = message
        self.digest = digest
        blob = f" (blob {digest})" if digest else ""
        super().__init__(f"{self.file}{blob}: {message}")


class RootfsError(Exception):
    """A unit's root filesystem that cannot be prepared.

    Rendered like the unit parser's errors: `<file>: <key>: <message>`, e.g.
    `units/web.toml: [rootfs].layers[1]: layer "/x" does not exist`."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {message}")
