"""Run supctl's checked-in bash completion the way bash does on <Tab>."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "packaging" / "completion"
BASH = SCRIPTS / "supctl"
FISH = SCRIPTS / "supctl.fish"


def bash_complete(line: str, path: str = "/usr/bin:/bin", env: dict[str, str] | None = None) -> list[str]:
    """What bash offers for `line` (the cursor at its end), from the checked-in script."""
    words = line.split(" ")
    script = (
        f'source "{BASH}"\n'
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}\n'
        "_shtab_supctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                          env={"PATH": path, **(env or {})}, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [w for w in done.stdout.splitlines() if w]


def fish_complete(line: str, path: str = "/usr/bin:/bin", env: dict[str, str] | None = None) -> list[str]:
    """What fish offers for `line`, from the checked-in script (candidates without their descriptions)."""
    done = subprocess.run(["fish", "--no-config", "-c", f"source {FISH}; complete -C {line!r}"], capture_output=True,
                          text=True, env={"PATH": path, "HOME": "/nonexistent", **(env or {})}, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [w.split("\t", 1)[0] for w in done.stdout.splitlines() if w]
