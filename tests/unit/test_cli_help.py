"""Every flag of supd and supctl says what it does and what it defaults to."""

from __future__ import annotations

import argparse

import pytest

from supervisor.cli.main import build_parser as supctl_parser
from supervisor.daemon.config import build_parser as supd_parser

NO_DEFAULT = (argparse._HelpAction, argparse._VersionAction)


def options(parser: argparse.ArgumentParser, where: str = "") -> list[tuple[str, argparse.Action]]:
    """(command path, action) for every option of the parser and its subcommands."""
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += options(sub, f"{where} {name}".strip())
        elif action.option_strings and not isinstance(action, NO_DEFAULT):
            found.append((where, action))
    return found


@pytest.mark.parametrize("parser", [supd_parser(), supctl_parser()], ids=["supd", "supctl"])
def test_every_flag_has_help_with_its_default(parser: argparse.ArgumentParser) -> None:
    flags = options(parser)
    assert len(flags) > 5
    missing = [f"{where or parser.prog} {a.option_strings[0]}" for where, a in flags if "(default: " not in (a.help or "")]
    assert missing == []


def test_supd_help_shows_the_built_in_defaults() -> None:
    helps = {a.option_strings[0]: a.help or "" for _, a in options(supd_parser())}
    assert helps["--units"].endswith("(default: /etc/supd/units)")
    assert helps["--live-restore"].endswith("(default: yes)")
    assert helps["--log-max-bytes"].endswith("(default: 10485760)")
