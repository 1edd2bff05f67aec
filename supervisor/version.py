"""supd's version, read once from the installed package's metadata (the
`version` in pyproject.toml): `supd --version`, `supctl --version`, `supctl
info` and the start-up log all say the same."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "supd"


def _installed_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        # a source tree run without `pip install -e .`: say so instead of guessing
        return "0+unknown"


VERSION = _installed_version()
