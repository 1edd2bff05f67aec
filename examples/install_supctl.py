"""Write this checkout's `supctl` launcher, and put it on PATH.

    python examples/install_supctl.py VENV [--link /usr/local/bin/supctl]

`make setup` runs it after pip: it replaces pip's console script
VENV/bin/supctl with a launcher that starts Python with -I -S (no site, so
none of the editable install's .pth import hook, which costs supctl about
0.4x of a bare interpreter's start-up) and puts this checkout first on
sys.path, the venv's packages last (for the few commands that import one).
It also names the socket of this checkout's `make run` supd
(.run/runtime/supd.sock), which supctl uses when /run/supd/supd.sock does
not exist (supervisor/api/client.py: a packaged supd always wins).

`--link PATH` (`make run`) makes PATH a symlink to the launcher, so a bare
`supctl` works in a new terminal. A PATH that is not such a symlink (a
packaged supctl, a file of someone else's) is left alone, with a note.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAUNCHER_MARK = "# supd checkout launcher"


def launcher_text(repo: Path, venv: Path) -> str:
    python = venv / "bin" / "python"
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    socket = repo / ".run" / "runtime" / "supd.sock"
    # The shebang's one argument is "-IS": the kernel passes it whole, Python
    # reads it as -I -S.
    return f"""#!{python} -IS
{LAUNCHER_MARK}: written by examples/install_supctl.py (`make setup`)
import sys
sys.path[:0] = [{str(repo)!r}]
sys.path.append({str(purelib)!r})
from supervisor.api import client
client.CHECKOUT_SOCKET = {str(socket)!r}
from supervisor.cli.main import main
sys.exit(main())
"""


def write_launcher(repo: Path, venv: Path) -> Path:
    target = venv / "bin" / "supctl"
    tmp = target.with_name(".supctl.tmp")
    tmp.write_text(launcher_text(repo, venv.absolute()))
    tmp.chmod(0o755)
    os.replace(tmp, target)
    return target


def link(launcher: Path, path: Path) -> str | None:
    """Point `path` at `launcher`; a note when `path` is not ours to replace."""
    if path.is_symlink() or not path.exists():
        if path.is_symlink() and os.readlink(path) == str(launcher):
            return None
        if path.is_symlink() and not os.readlink(path).endswith("/bin/supctl"):
            return f"{path} links to {os.readlink(path)}: left alone; run {launcher}"
        tmp = path.with_name(".supctl.link.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(launcher)
        os.replace(tmp, path)
        return None
    return f"{path} exists and is not a link to a checkout's supctl: left alone; run {launcher}"


def main() -> int:
    parser = argparse.ArgumentParser(description="write this checkout's supctl launcher")
    parser.add_argument("venv", type=Path, help="the venv whose bin/supctl becomes the launcher")
    parser.add_argument("--link", type=Path, metavar="PATH", help="also make PATH a symlink to it (default: none)")
    args = parser.parse_args()
    launcher = write_launcher(REPO, args.venv.absolute())
    if args.link is not None:
        note = link(launcher, args.link)
        if note:
            print(f"supctl: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
