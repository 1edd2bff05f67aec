"""supctl as a user feels it: whole-process wall time of `supctl list` (5
units) and `supctl status UNIT` beside a bare `python3 -I -S -c pass`,
`podman ps` and `crun list`, interleaved round by round so that a busy
spell of the machine hits every command alike.

    sudo python3 bench/cli_latency.py [--rounds 30]

supctl is the console script next to this Python (what `make setup` and the
.deb put on PATH), else `python -m supervisor.cli.main`. Target (issue 14):
each supctl median ≤ 4× the bare interpreter's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures  # noqa: E402
import rawhttp  # noqa: E402
from figures import Table  # noqa: E402
from scratch import scratch_dir  # noqa: E402
from supd_instance import REPO, SupdInstance, repo_env  # noqa: E402

NAME = "cli_latency"
UNITS = 5
UNIT_TEXT = '[exec]\ncommand = ["/bin/sleep", "100000"]\n'
TARGET_RATIO = 4.0


def supctl_argv() -> list[str]:
    script = Path(sys.executable).parent / "supctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "supervisor.cli.main"]


def wall(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace').strip()}")
    return took


def run(rounds: int = 30) -> Table:
    with scratch_dir(NAME) as work:
        units = work / "units"
        units.mkdir()
        for i in range(UNITS):
            (units / f"u{i}.toml").write_text(UNIT_TEXT)
        with SupdInstance(work) as supd:
            supd.wait_ready()
            env = repo_env({"SUPD_SOCKET": str(supd.socket)})
            deadline = time.monotonic() + 60
            while supd.supctl("status", *(f"u{i}" for i in range(UNITS)), check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the 5 units did not reach running within 60 s")
                time.sleep(0.2)
            ctl = supctl_argv()
            # as installed: byte-compiled (a source tree run under PYTHONDONTWRITEBYTECODE never is)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "supervisor")], check=True, stdout=subprocess.DEVNULL)
            commands: dict[str, list[str]] = {
                # this interpreter by its path: a `python3` on PATH may be a shim (pyenv's is a shell script)
                "`python3 -I -S -c pass`": [sys.executable, "-I", "-S", "-c", "pass"],
                # the floor of any console script in this venv: site and its .pth files (an editable install's finder)
                "`python -c pass` (this venv, with site)": [sys.executable, "-c", "pass"],
                f"`supctl list` ({UNITS} units)": [*ctl, "list"],
                "`supctl status u0`": [*ctl, "status", "u0"],
            }
            if shutil.which("podman"):
                commands["`podman ps`"] = ["podman", "ps"]
            if shutil.which("crun"):
                commands["`crun list`"] = ["crun", "list"]
            # supd's own part: the same requests from this process, no start-up (status asks for 10 log lines too)
            asks: dict[str, list[tuple[str, str]]] = {
                "supd answers `list` (raw HTTP, in-process)": [("GET", "/v1/units")],
                "supd answers `status u0` (raw HTTP, in-process)": [("GET", "/v1/units/u0?logs=10")],
            }
            samples: dict[str, list[float]] = {name: [] for name in [*commands, *asks]}
            for name, argv in commands.items():  # warm the page cache once
                wall(argv, env)
            for r in range(rounds):
                names = list(commands)
                names = names[r % len(names) :] + names[: r % len(names)]  # no command always first
                for name in names:
                    samples[name].append(wall(commands[name], env))
                for name, requests in asks.items():
                    started = time.perf_counter()
                    for method, path in requests:
                        rawhttp.request(supd.socket, method, path)
                    samples[name].append(time.perf_counter() - started)
    base = figures.summarize(samples["`python3 -I -S -c pass`"]).median
    rows: list[tuple[Any, ...]] = []
    for name, seconds in samples.items():
        s = figures.summarize(seconds)
        ratio = s.median / base
        is_supctl = name.startswith("`supctl")
        rows.append((name, s.median, s.p90, ratio,
                     f"≤ {TARGET_RATIO:g}×" if is_supctl else None, ratio <= TARGET_RATIO if is_supctl else None))  # fmt: skip
    notes = (f"{rounds} interleaved rounds; supctl = {' '.join(ctl)}; load {os.getloadavg()[0]:.2f}",)
    raw = {name: [x * 1000 for x in seconds] for name, seconds in samples.items()}
    return Table(NAME, "supctl start-up: whole-process wall time", ("command", "median ms", "p90 ms", "× python3 -I -S", "target", "met"),
                 tuple(rows), notes, raw)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved samples of each command (default: 30)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("cli_latency.py needs root (supd's cgroups)")
    table = run(args.rounds)
    print(figures.render_markdown(table))


if __name__ == "__main__":
    main()
