"""One version, from the package metadata, in every place that prints one."""

from __future__ import annotations

from importlib import metadata

import pytest

from supervisor.cli.main import build_parser as supctl_parser
from supervisor.daemon.config import build_parser as supd_parser
from supervisor.version import VERSION


def test_version_is_the_installed_distributions() -> None:
    assert VERSION == metadata.version("supd")


@pytest.mark.parametrize(("parser", "prog"), [(supd_parser, "supd"), (supctl_parser, "supctl")])
def test_both_commands_print_it(parser, prog: str, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"{prog} {VERSION}\n"
