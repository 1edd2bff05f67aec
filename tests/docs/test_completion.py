"""supctl's shell completions: checked in under packaging/completion,
generated from supctl's parser by packaging/completion.py with shtab."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.docs.generators import REPO, load

completion = load("completion")
CHECKED_IN = REPO / "packaging" / "completion"
BASH = CHECKED_IN / "supctl"


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


def test_checked_in_scripts_match_the_parser(tmp_path: Path) -> None:
    completion.main(["--out", str(tmp_path)])
    names = sorted(s.file_name for s in completion.SCRIPTS)
    assert names == ["_supctl", "supctl", "supctl.fish"]
    assert sorted(p.name for p in CHECKED_IN.iterdir()) == names
    stale = [n for n in names if (tmp_path / n).read_text() != (CHECKED_IN / n).read_text()]
    assert not stale, f"packaging/completion is out of date with supctl's parser for {stale}: run `make completion` and commit"


def test_bash_script_parses() -> None:
    done = subprocess.run(["bash", "-n", str(BASH)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_bash_completes_subcommands_and_options() -> None:
    assert bash_complete("supctl sta") == ["status", "start"]
    assert bash_complete("supctl image p") == ["pull", "prune"]
    assert "--follow" in bash_complete("supctl logs --f")


def test_every_unit_argument_completes_unit_names() -> None:
    parser = completion.completing_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    with_unit = sorted(n for n, p in commands.items() if any(a.metavar == "UNIT" for a in p._actions))
    assert with_unit == sorted(["status", "start", "stop", "restart", "freeze", "thaw", "logs", "exec"])
    for name in with_unit:
        (unit_arg,) = [a for a in commands[name]._actions if a.metavar == "UNIT"]
        assert unit_arg.complete is completion.UNIT_COMPLETER


def test_zsh_and_fish_scripts_generate_and_complete_unit_names() -> None:
    zsh = completion.script("zsh")
    assert "#compdef supctl" in zsh and "_supctl_unit_names()" in zsh
    fish = completion.script("fish")
    assert "complete -c supctl" in fish and "supctl list --json" in fish
