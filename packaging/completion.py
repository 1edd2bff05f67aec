"""Write supctl's shell completions for bash, zsh and fish, generated from
its argument parser (supervisor.cli.main.build_parser) with shtab.

shtab is a build-time tool (the `completion` extra), never imported by
supctl itself. The scripts are checked in under packaging/completion/
(tests/docs checks they are up to date), so building the .deb needs no shtab.

Unit names complete from the running supd: the arguments named UNIT ask
`supctl list --json` (the listing's only "name" keys are the units': unit
names never hold a quote, so grep can pick them out without a JSON parser
in the shell). supctl finds the socket as usual ($SUPD_SOCKET or the default).

Usage: python3 packaging/completion.py [--out DIR]  (default: packaging/completion)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # supctl's parser from this checkout, also without an install

import shtab  # noqa: E402

from supervisor.cli.main import build_parser  # noqa: E402

DEFAULT_OUT = REPO / "packaging" / "completion"
UNIT_NAMES = "supctl list --json 2>/dev/null | grep -o '\"name\": *\"[^\"]*\"' | cut -d'\"' -f4"

UNIT_COMPLETER: dict[str, object] = {
    "bash": "_supctl_unit_names",
    "zsh": "_supctl_unit_names",
    # a function, not the pipeline inline: shtab puts fish's command in
    # double quotes without escaping the ones the pipeline holds
    "fish": "(__supctl_unit_names)",
    "preamble": {
        "bash": f"""
# $1: the word being completed
_supctl_unit_names() {{
  compgen -W "$({UNIT_NAMES})" -- "$1"
}}
""",
        "zsh": f"""
_supctl_unit_names() {{
  local -a units
  units=(${{(f)"$({UNIT_NAMES})"}})
  compadd -a units
}}
""",
        "fish": f"""
function __supctl_unit_names
    {UNIT_NAMES}
end
""",
    },
}


@dataclass(frozen=True)
class Script:
    shell: str
    file_name: str  # the name each shell's loader looks for


SCRIPTS = (
    Script("bash", "supctl"),  # /usr/share/bash-completion/completions/supctl
    Script("zsh", "_supctl"),  # /usr/share/zsh/vendor-completions/_supctl
    Script("fish", "supctl.fish"),  # /usr/share/fish/vendor_completions.d/supctl.fish
)


def completing_parser() -> argparse.ArgumentParser:
    """supctl's parser with every UNIT argument completing unit names."""
    parser = build_parser()
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
            elif action.metavar == "UNIT":
                action.complete = UNIT_COMPLETER  # type: ignore[attr-defined]
    return parser


def script(shell: str) -> str:
    return shtab.complete(completing_parser(), shell=shell)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write supctl's bash, zsh and fish completions with shtab.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write into (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for s in SCRIPTS:
        (args.out / s.file_name).write_text(script(s.shell))
    return 0


if __name__ == "__main__":
    sys.exit(main())
