"""What the pure cgroup v2 tier runs in the guest, and how its results read.

The tier is every test marked `purev2` (tests/conftest.py marks
tests/integration, tests/e2e and tests/systemd). The unit tier does no I/O and
stays on the host.

The guest emulates its CPUs (TCG, about 3-5 times slower than the host), so
per-test timeouts are scaled. A module whose fixtures alone take minutes runs
as its own pytest session with a timeout of its own.
"""

from __future__ import annotations

import os
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "purev2"
TIER_PATHS = ("tests/integration", "tests/e2e", "tests/systemd")  # as tests/conftest.py's PUREV2_DIRS
HOST_TIMEOUT = 120  # pyproject's `timeout`, sized for the host
TIMEOUT_SCALE = 4
GUEST_RESULTS = "/root/results"
# Every session's environment: tells the tests' own waits how much slower
# this machine is than the host they were sized on (helpers may multiply by it).
TIME_SCALE_ENV = {"SUPD_TEST_TIME_SCALE": str(TIMEOUT_SCALE)}
# The whole tier's wall-clock budget, so that `make test` stays within CI's
# hour on a 2-core host: a session still running when it is spent gets SIGINT
# (pytest then stops, reports and writes its JUnit XML); later ones are skipped.
BUDGET_SECONDS = int(os.environ.get("SUPD_VM_BUDGET", str(40 * 60)))

# Modules that need more than the scaled timeout, run in a session of their own.
LONG_MODULES: dict[str, int] = {
    # its module fixtures build the .deb (a venv with pip) and boot an nspawn
    # sandbox under the guest's systemd: ~125 s under TCG before the first test
    "tests/systemd/test_service.py": 900,
}

# Sessions run a second time with another cgroup driver for supd (the e2e
# supds use cgroupfs unless told otherwise; on a systemd host the systemd
# driver is what a packaged supd picks): name -> (environment, paths).
DRIVER_REPEATS: dict[str, tuple[dict[str, str], list[str]]] = {
    "e2e_systemd_driver": ({"SUPD_TEST_CGROUP_DRIVER": "systemd"}, ["tests/e2e/test_cgroups_e2e.py"]),
}

# Tests left out of the VM by value: what they would cost there against what
# they find that the host tiers do not. Each entry: node id -> why.
EXCLUDED: dict[str, str] = {
    # ~50 s on the host, several minutes under TCG; it walks the same code
    # paths the e2e modules test one by one, and the host tier runs it
    "tests/e2e/test_soak_smoke.py::test_soak_smoke_keeps_every_invariant":
        "the soak smoke: ~50 s on the host, minutes under TCG, same paths as the e2e tests",
}


@dataclass(frozen=True)
class Session:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def shell_line(self, venv: str, src: str, budget: int) -> str:
        # unbuffered: pytest's progress reaches the CI log as it happens, not in 8 KiB lumps
        env = {"PYTHONUNBUFFERED": "1", **TIME_SCALE_ENV, **self.env}
        command = ["env", *(f"{k}={v}" for k, v in env.items()),
                   "timeout", "-s", "INT", "-k", "60", str(budget), f"{venv}/bin/python", "-m", "pytest", *self.argv]
        return f"cd {src} && {shlex.join(command)}"


def sessions(extra_args: list[str]) -> list[Session]:
    """The pytest sessions of the tier. With `extra_args` (a developer's own
    selection), one session with those arguments and the scaled timeout."""
    scaled = HOST_TIMEOUT * TIMEOUT_SCALE

    def common(name: str, timeout: int) -> list[str]:
        return [f"--timeout={timeout}", "-o", f"faulthandler_timeout={timeout}", "-p", "no:cacheprovider",
                f"--junitxml={GUEST_RESULTS}/{name}.xml"]

    if extra_args:
        return [Session("selected", [*common("selected", scaled), *extra_args])]
    # the marked folders named, so pytest does not import the unit tier only to deselect it
    main = [*common("main", scaled), "-m", MARKER, *TIER_PATHS]
    main += [f"--ignore={module}" for module in LONG_MODULES]
    main += [f"--deselect={node}" for node in EXCLUDED]
    # the short sessions first: under the budget, the long one is the one cut short
    found = []
    for module, timeout in LONG_MODULES.items():
        name = Path(module).stem
        found.append(Session(name, [*common(name, timeout), "-m", MARKER, module]))
    for name, (env, paths) in DRIVER_REPEATS.items():
        found.append(Session(name, [*common(name, scaled), "-m", MARKER, *paths], env))
    found.append(Session("main", main))
    return found


@dataclass(frozen=True)
class Summary:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failed: tuple[str, ...] = ()

    def __add__(self, other: Summary) -> Summary:
        return Summary(self.tests + other.tests, self.failures + other.failures, self.errors + other.errors,
                       self.skipped + other.skipped, self.seconds + other.seconds, self.failed + other.failed)

    def line(self) -> str:
        passed = self.tests - self.failures - self.errors - self.skipped
        return (f"purev2 junit: tests={self.tests} passed={passed} failures={self.failures} "
                f"errors={self.errors} skipped={self.skipped} time={self.seconds:.0f}s")


def read_junit(path: Path) -> Summary:
    total = Summary()
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        failed = tuple(
            f"[{path.stem}] {case.get('classname')}::{case.get('name')}"
            for case in suite.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None
        )
        total += Summary(int(suite.get("tests", 0)), int(suite.get("failures", 0)), int(suite.get("errors", 0)),
                         int(suite.get("skipped", 0)), float(suite.get("time", 0.0)), failed)
    return total
