"""supctl's shell completions: checked in under packaging/completion,
generated from supctl's parser by packaging/completion.py with shtab."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.generators import REPO, load
from tests.helpers.completion import BASH, bash_complete, fish_complete

completion = load("completion")
CHECKED_IN = REPO / "packaging" / "completion"


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
    assert bash_complete("supctl image p") == ["pull", "push", "prune"]
    assert "--follow" in bash_complete("supctl logs --f")


def test_every_unit_argument_completes_unit_names() -> None:
    parser = completion.completing_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    with_unit = sorted(n for n, p in commands.items() if any(a.metavar == "UNIT" for a in p._actions))
    assert with_unit == sorted(["status", "start", "stop", "restart", "freeze", "thaw", "logs", "exec"])
    for name in with_unit:
        (unit_arg,) = [a for a in commands[name]._actions if a.metavar == "UNIT"]
        assert unit_arg.complete is completion.UNIT_COMPLETER


def test_zsh_and_fish_scripts_generate_and_parse() -> None:
    zsh = completion.script("zsh")
    assert "#compdef supctl" in zsh and "_supctl_unit_names()" in zsh
    fish = completion.script("fish")
    assert "complete -c supctl" in fish and "(__supctl_unit_names)" in fish
    for argv in (["zsh", "-n", str(CHECKED_IN / "_supctl")], ["fish", "--no-execute", str(CHECKED_IN / "supctl.fish")]):
        if shutil.which(argv[0]) is None:
            pytest.fail(f"{argv[0]} is missing (make test installs it)")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0 and done.stderr == "", f"{argv}: {done.stderr}"


def test_fish_completes_subcommands() -> None:
    assert fish_complete("supctl sta") == ["start", "status"]
