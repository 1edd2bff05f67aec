"""The .deb built by packaging/build-deb.sh, once per test session.

Both tests/packaging (lintian, the package's content) and
tests/systemd/test_service.py (installed under a real systemd) need it, and a
build takes about 45 s: the first caller builds it, later ones get the same
file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 1200.0  # a ceiling for a hang: ~45 s here, minutes in a loaded TCG VM

_built: dict[str, Path] = {}


def built_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing")
    if "deb" in _built and _built["deb"].is_file():
        return _built["deb"]
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        ["sh", str(REPO / "packaging" / "build-deb.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, f"build-deb.sh failed:\n{built.stderr[-4000:]}"
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.name.startswith("supd_") and path.suffix == ".deb"
    _built["deb"] = path
    return path
