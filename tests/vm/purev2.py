#!/usr/bin/env python3
"""Run supd's root test tiers in a Debian 12 VM whose systemd (PID 1) mounts
pure cgroup v2 — the kind of host real users run, unlike the hybrid CI host.

    tests/vm/purev2.py test [--keep] [-- PYTEST ARGS]   build if needed, boot, ship, run the tier, power off
    tests/vm/purev2.py run [--keep] -- CMD              the same around one shell command
    tests/vm/purev2.py build [--rebuild]                the image only (cached by its recipe's hash)
    tests/vm/purev2.py up | ship | exec CMD | down | status   step by step; `exec` forwards stdin

Exit status: the tests' (or the command's). Needs root, qemu-system-x86,
qemu-utils, mmdebstrap and e2fsprogs (`make test` installs them). Cache and
run state live in $SUPD_VM_DIR (default /var/tmp/supd-purev2). See README.md here.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import image  # noqa: E402
import project  # noqa: E402
import tier  # noqa: E402
from image import log  # noqa: E402
from machine import Machine  # noqa: E402

CACHE = Path(os.environ.get("SUPD_VM_DIR", "/var/tmp/supd-purev2"))
REPO = Path(__file__).resolve().parents[2]
VM = Machine(CACHE / "run")


def boot() -> None:
    VM.up(image.build(CACHE))


def ship() -> None:
    project.ship_tree(VM, REPO)
    if VM.ssh(["test", "-x", f"{project.GUEST_VENV}/bin/pytest"], check=False).returncode != 0:
        project.install(VM, CACHE, REPO, image.recipe_key())


def guest_shell(line: str, *, stdin: int | None = None) -> int:
    """Run a shell line as root in the shipped tree with the venv first on PATH."""
    prelude = f"cd {project.GUEST_SRC} 2>/dev/null || cd /root; . {project.GUEST_VENV}/bin/activate 2>/dev/null;"
    return subprocess.run(VM.ssh_argv() + ["bash", "-c", shlex.quote(f"{prelude} {line}")], stdin=stdin,
                          check=False).returncode


def run_tier(pytest_args: list[str]) -> int:
    VM.ssh(["rm", "-rf", tier.GUEST_RESULTS, "&&", "mkdir", "-p", tier.GUEST_RESULTS])
    deadline = time.monotonic() + tier.BUDGET_SECONDS
    status = 0
    for session in tier.sessions(pytest_args):
        left = int(deadline - time.monotonic())
        if left <= 0:
            log(f"pytest session {session.name}: skipped, the tier's {tier.BUDGET_SECONDS} s budget is spent")
            status = status or 1
            continue
        started = time.monotonic()
        log(f"pytest session {session.name}: {shlex.join(session.argv)}")
        rc = guest_shell(session.shell_line(project.GUEST_VENV, project.GUEST_SRC, left), stdin=subprocess.DEVNULL)
        log(f"pytest session {session.name} exited {rc} after {time.monotonic() - started:.0f} s")
        status = status or rc
    summary = fetch_results()
    print(summary.line(), flush=True)
    for node in summary.failed:
        print(f"  failed: {node}")
    return status


def fetch_results() -> tier.Summary:
    local = CACHE / "results" / time.strftime("%Y%m%dT%H%M%S")
    local.mkdir(parents=True)
    with subprocess.Popen(VM.ssh_argv() + ["tar", "-C", tier.GUEST_RESULTS, "-cf", "-", "."],
                          stdout=subprocess.PIPE) as sender:
        subprocess.run(["tar", "-C", str(local), "-xf", "-"], stdin=sender.stdout, check=False)
    total = tier.Summary()
    for xml in sorted(local.glob("*.xml")):
        total += tier.read_junit(xml)
    log(f"JUnit XML in {local}")
    return total


def around_vm(keep: bool, body) -> int:  # noqa: ANN001 - a callable returning an exit status
    """Boot, ship, run `body`, power off — also on failure, Ctrl-C or SIGTERM."""
    started = time.monotonic()
    try:
        boot()
        ship()
        return body()
    finally:
        if not keep:
            VM.down()
        log(f"total {time.monotonic() - started:.0f} s")


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`, which powers the guest off


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build").add_argument("--rebuild", action="store_true")
    sub.add_parser("up")
    sub.add_parser("ship")
    sub.add_parser("exec").add_argument("line", nargs=argparse.REMAINDER)
    sub.add_parser("down")
    sub.add_parser("status")
    for name in ("run", "test"):
        p = sub.add_parser(name)
        p.add_argument("--keep", action="store_true", help="leave the VM up afterwards")
        p.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    if os.geteuid() != 0:
        sys.exit("purev2: needs root (mmdebstrap --mode=root, and the image is root's)")

    rest: list[str] = getattr(args, "args", [])
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if args.command == "build":
        print(image.build(CACHE, rebuild=args.rebuild).folder)
    elif args.command == "up":
        boot()
    elif args.command == "ship":
        _need_up()
        ship()
    elif args.command == "exec":
        _need_up()
        return guest_shell(" ".join(args.line))
    elif args.command == "down":
        VM.down()
    elif args.command == "status":
        pid = VM.pid()
        print(f"up: pid {pid}, {shlex.join(VM.ssh_argv())}" if pid else "down")
        return 0 if pid else 1
    elif args.command == "run":
        if not rest:
            parser.error("run: give a command line after --")
        return around_vm(args.keep, lambda: guest_shell(" ".join(rest), stdin=None))
    elif args.command == "test":
        return around_vm(args.keep, lambda: run_tier(rest))
    return 0


def _need_up() -> None:
    if VM.pid() is None:
        sys.exit("purev2: the VM is not up (tests/vm/purev2.py up)")


if __name__ == "__main__":
    sys.exit(main())
