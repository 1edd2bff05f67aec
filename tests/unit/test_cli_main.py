"""supctl argument parsing and exit-code mapping (no daemon needed)."""

from __future__ import annotations

import io
import os

import pytest

from supervisor.api.client import DaemonNotRunningError, RequestError
from supervisor.cli.main import (
    EXIT_ERROR,
    EXIT_NO_SUCH_UNIT,
    EXIT_USAGE,
    exit_code_for,
    main,
    parse_args,
    parse_env,
    split_image_ref,
    UsageError,
    wants_color,
)


def test_exec_takes_everything_after_double_dash_verbatim() -> None:
    args = parse_args(["exec", "web", "-e", "A=1", "--user", "nobody", "-w", "/srv", "--", "ls", "-l", "--json", "--", "x"])
    assert (args.unit, args.user, args.env, args.workdir) == ("web", "nobody", ["A=1"], "/srv")
    assert args.cmd == ["ls", "-l", "--json", "--", "x"]
    assert parse_args(["exec", "web", "sh"]).cmd == ["sh"]


def test_exec_takes_docker_s_i_and_t() -> None:
    args = parse_args(["exec", "-it", "web", "--", "sh"])
    assert (args.interactive, args.tty, args.cmd) == (True, True, ["sh"])
    args = parse_args(["exec", "web", "-t", "--", "-i"])  # after "--" it is the command's
    assert (args.interactive, args.tty, args.cmd) == (False, True, ["-i"])
    args = parse_args(["exec", "web", "sh"])
    assert (args.interactive, args.tty) == (False, False)


def test_json_and_socket_go_before_or_after_the_command() -> None:
    assert parse_args(["--json", "list"]).json is True
    assert parse_args(["list", "--json"]).json is True
    assert parse_args(["list"]).json is False
    assert parse_args(["--socket", "/a", "status", "web"]).socket == "/a"
    assert parse_args(["status", "web", "--socket", "/b"]).socket == "/b"
    assert parse_args(["status"]).units == []


def test_logs_and_events_options() -> None:
    args = parse_args(["logs", "web", "-f", "-n", "5"])
    assert (args.unit, args.follow, args.lines) == ("web", True, 5)
    assert parse_args(["events"]).follow is False


@pytest.mark.parametrize("argv", [["bogus"], ["start"], ["logs", "web", "-n", "-3"], ["list", "--", "x"], []])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, stdout=io.StringIO(), stderr=io.StringIO()) == EXIT_USAGE


def test_exit_code_mapping() -> None:
    assert exit_code_for(RequestError(404, "no such unit: web")) == EXIT_NO_SUCH_UNIT
    assert exit_code_for(RequestError(404, "no such API path: /v1/x")) == EXIT_ERROR
    assert exit_code_for(RequestError(409, "web is exited, not frozen")) == EXIT_ERROR
    assert exit_code_for(DaemonNotRunningError(__import__("pathlib").Path("/x"), "No such file or directory")) == EXIT_ERROR


def test_env_pairs() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_env(["novalue"])


def test_image_reference_splits_the_tag_off_the_last_part() -> None:
    assert split_image_ref("/srv/alpine:3.20") == ("/srv/alpine", "3.20")
    assert split_image_ref("/srv/alpine") == ("/srv/alpine", "latest")
    assert split_image_ref("/srv/a:b/alpine") == ("/srv/a:b/alpine", "latest")
    assert split_image_ref("img:v1") == (os.path.abspath("img"), "v1")


def test_unreachable_daemon_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPD_SOCKET", "/nonexistent/supdtest.sock")
    out, err = io.StringIO(), io.StringIO()
    assert main(["list"], stdout=out, stderr=err) == EXIT_ERROR
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "supctl: cannot reach supd at /nonexistent/supdtest.sock: No such file or directory (is supd running?)\n"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "environ", "flag", "expected"),
    [
        (True, {}, False, True),
        (False, {}, False, False),
        (True, {"NO_COLOR": ""}, False, False),  # set to anything, even empty
        (True, {"NO_COLOR": "1"}, False, False),
        (True, {}, True, False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(tty: bool, environ: dict[str, str], flag: bool, expected: bool) -> None:
    stdout = _Terminal() if tty else io.StringIO()
    assert wants_color(stdout, environ, flag) is expected


def test_no_color_goes_before_or_after_the_command() -> None:
    assert parse_args(["--no-color", "list"]).no_color is True
    assert parse_args(["tree", "--no-color"]).no_color is True
    assert parse_args(["list"]).no_color is False


@pytest.mark.parametrize(
    "argv",
    [["list"], ["--socket", "/x", "status", "web", "--json"], ["exec", "-e", "A=1", "-w", "/srv", "web", "ls"],
     ["image", "pull", "busybox:1.36", "--authfile", "a.json"], ["logs", "-n", "5", "web"], ["--no-color", "tree"]],
)  # fmt: skip
def test_parsing_one_command_alone_gives_what_the_full_parser_gives(argv: list[str]) -> None:
    from supervisor.cli.main import build_parser

    assert vars(parse_args(argv)) == vars(parse_args_full(build_parser(), argv))


def parse_args_full(parser: object, argv: list[str]) -> object:
    args = parser.parse_args(argv)  # type: ignore[attr-defined]
    for key, default in (("json", False), ("socket", None), ("no_color", False)):
        setattr(args, key, getattr(args, key, default))
    return args


def test_an_unknown_command_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lisst"]) == EXIT_USAGE
    assert "choose from 'list', 'status'" in capsys.readouterr().err


def test_terminal_width_is_shutils_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from supervisor.cli.main import terminal_width

    monkeypatch.setenv("COLUMNS", "161")
    assert terminal_width(io.StringIO()) == 161 == shutil.get_terminal_size().columns
    monkeypatch.delenv("COLUMNS")
    assert terminal_width(io.StringIO()) == 80  # not a terminal, no $COLUMNS: shutil's fallback
