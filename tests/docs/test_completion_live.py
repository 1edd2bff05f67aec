"""supctl's bash and fish completions ask a real supd for unit names (the checked-in
script from packaging/completion, the real supctl on PATH). Here rather than
in tests/e2e: that tier runs in the pure cgroup v2 VM too, which has no fish."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers.completion import bash_complete, fish_complete
from tests.e2e.conftest import Supd, supd  # noqa: F401 (the fixture)

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
    assert fish_complete("supctl restart w", path, env) == ["web", "worker.1"]
    assert fish_complete("supctl stop w", path, {"SUPD_SOCKET": str(supd.root / "gone.sock")}) == []
