"""supctl's bash completion asks a real supd for unit names (the checked-in
script from packaging/completion, the real supctl on PATH)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers.completion import bash_complete
from tests.e2e.conftest import Supd

IDLE = """
[unit]
enabled = false
[exec]
command = ["/bin/true"]
"""


def test_bash_completes_unit_names_from_the_running_supd(supd: Supd) -> None:
    for name in ("web", "worker.1", "db"):
        supd.write_unit(name, IDLE)
    supd.start()
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # the venv's supctl
    env = {"SUPD_SOCKET": str(supd.socket), "PYTHONPATH": supd.env()["PYTHONPATH"]}
    assert bash_complete("supctl restart w", path, env) == ["web", "worker.1"]
    assert bash_complete("supctl logs ", path, env) == ["db", "web", "worker.1"]
    assert bash_complete("supctl start web w", path, env) == ["web", "worker.1"]  # nargs="+": each word
    # no supd: nothing offered, and no error text in the user's terminal
    assert bash_complete("supctl stop w", path, {"SUPD_SOCKET": str(supd.root / "gone.sock")}) == []
