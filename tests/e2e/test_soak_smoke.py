"""The soak's smoke (issue 10): bench/soak.py with 40 operations and no
pacing, every kind of operation at least once (its first 16 steps go through
each), invariants checked after every step. The full soak (500 operations over
at least 10 minutes) is `make soak`, not part of the test run.

30-70 s on a 2-core host (30 s more for each violation, which waits out the
settle bound); it is the whole soak program, so a violation it reports is
printed with the seed and the step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = "1"

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(400)]


def test_soak_smoke_keeps_every_invariant() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--ops", "40", "--min-seconds", "0", "--seed", SEED],
        cwd=REPO, capture_output=True, text=True, timeout=380,
    )
    assert r.returncode == 0, f"soak smoke failed (seed {SEED}):\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    assert "| invariant violations | 0 |" in r.stdout
