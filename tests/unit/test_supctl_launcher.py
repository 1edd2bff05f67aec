"""The checkout's supctl launcher (examples/install_supctl.py): a real
process started through its shebang, with -I -S, finds this checkout."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _installer():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("install_supctl", REPO / "examples" / "install_supctl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    return venv


def test_the_launcher_runs_supctl_from_the_checkout_without_site(tmp_path: Path) -> None:
    launcher = _installer().write_launcher(REPO, _venv(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "SUPD_SOCKET"}
    version = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, env=env, check=True)
    assert version.stdout.startswith("supctl ")
    probe = subprocess.run(
        [str(launcher), "--socket", str(tmp_path / "none.sock"), "list"], capture_output=True, text=True, env=env
    )
    assert probe.returncode == 1
    assert f"cannot reach supd at {tmp_path / 'none.sock'}" in probe.stderr


def test_the_launcher_names_the_checkout_socket(tmp_path: Path) -> None:
    text = _installer().launcher_text(REPO, _venv(tmp_path))
    assert text.splitlines()[0].endswith("/venv/bin/python -IS")
    assert repr(str(REPO / ".run" / "runtime" / "supd.sock")) in text


def test_link_replaces_a_checkout_link_but_not_a_file(tmp_path: Path) -> None:
    installer = _installer()
    launcher = installer.write_launcher(REPO, _venv(tmp_path))
    link = tmp_path / "supctl"
    assert installer.link(launcher, link) is None
    assert os.readlink(link) == str(launcher)
    link.unlink()
    link.write_text("#!/bin/sh\n")
    assert "left alone" in (installer.link(launcher, link) or "")
    assert link.read_text() == "#!/bin/sh\n"
