"""The route table and request validation shared by server and client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.api import commands
from supervisor.api.commands import (
    BadRequestError,
    MethodNotAllowedError,
    NoSuchUnitError,
    NotFoundError,
    resolve,
)

unit_names = st.from_regex(commands.UNIT_NAME_RE, fullmatch=True)


@pytest.mark.parametrize(
    ("method", "target", "command", "params"),
    [
        ("GET", "/v1/info", "info", {}),
        ("GET", "/v1/units", "list_units", {}),
        ("GET", "/v1/units/web", "unit_status", {"name": "web"}),
        ("POST", "/v1/units/web/start", "command", {"name": "web", "verb": "start"}),
        ("POST", "/v1/units/web/thaw", "command", {"name": "web", "verb": "thaw"}),
        ("POST", "/v1/reload", "reload", {}),
        ("GET", "/v1/units/web/logs?n=5&follow=1", "logs", {"name": "web"}),
        ("GET", "/v1/events?n=3&follow=0", "events", {}),
        ("GET", "/v1/tree", "tree", {}),
        ("POST", "/v1/units/web/exec", "exec", {"name": "web"}),
        ("GET", "/v1/images", "images", {}),
        ("POST", "/v1/images", "import_image", {}),
        ("POST", "/v1/images/remove", "remove_image", {}),
        ("POST", "/v1/images/prune", "prune_images", {}),
    ],
)
def test_every_route_resolves(method: str, target: str, command: str, params: dict[str, str]) -> None:
    request = resolve(method, target)
    assert request.route.command == command
    assert request.params == params


def test_query_is_parsed_and_validated() -> None:
    query = resolve("GET", "/v1/units/web/logs?n=5&follow=1").query
    assert commands.query_int(query, "n", 10) == 5
    assert commands.query_flag(query, "follow") is True
    assert commands.query_int({}, "n", 10) == 10
    with pytest.raises(BadRequestError, match="expected a non-negative integer, got 'x'"):
        commands.query_int({"n": "x"}, "n", 10)
    with pytest.raises(BadRequestError, match="expected 0..1000000, got -1"):
        commands.query_int({"n": "-1"}, "n", 10)
    with pytest.raises(BadRequestError, match="expected 0 or 1"):
        commands.query_flag({"follow": "yes"}, "follow")


def test_unknown_paths_and_wrong_methods() -> None:
    with pytest.raises(NotFoundError, match="no such API path: /v1/nothing"):
        resolve("GET", "/v1/nothing")
    with pytest.raises(NotFoundError):
        resolve("POST", "/v1/units/web/explode")
    with pytest.raises(MethodNotAllowedError) as err:
        resolve("GET", "/v1/units/web/start")
    assert err.value.status == 405 and err.value.allowed == ("POST",)
    with pytest.raises(MethodNotAllowedError) as err:
        resolve("POST", "/v1/units/web/logs")
    assert err.value.allowed == ("GET",)
    with pytest.raises(MethodNotAllowedError) as err:
        resolve("DELETE", "/v1/images")
    assert set(err.value.allowed) == {"GET", "POST"}


def test_bad_unit_name_is_400() -> None:
    with pytest.raises(BadRequestError, match="invalid unit name '..'"):
        resolve("GET", "/v1/units/..")


def test_error_bodies() -> None:
    assert NoSuchUnitError("web").body() == {"error": "no such unit: web"}
    assert NoSuchUnitError("web").status == 404
    assert commands.ConflictError("x").status == 409
    assert BadRequestError("x").status == 400


@given(name=unit_names, verb=st.sampled_from(commands.VERBS))
def test_client_paths_resolve_back_to_the_same_command(name: str, verb: str) -> None:
    request = resolve("POST", commands.command_path(name, verb))
    assert (request.route.command, request.params) == ("command", {"name": name, "verb": verb})
    logs = resolve("GET", commands.logs_path(name, 7, True))
    assert logs.params == {"name": name} and logs.query == {"n": "7", "follow": "1"}


@given(target=st.text(max_size=80))
def test_resolve_never_fails_with_anything_but_an_api_error(target: str) -> None:
    for method in ("GET", "POST", "PUT"):
        try:
            resolve(method, "/" + target)
        except commands.ApiError:
            pass


def test_json_body_parsing() -> None:
    assert commands.parse_json_body(b"") is None
    assert commands.parse_json_body(b'{"a": 1}') == {"a": 1}
    with pytest.raises(BadRequestError, match="malformed JSON body: Expecting"):
        commands.parse_json_body(b"{nope")
    with pytest.raises(BadRequestError, match="malformed JSON body"):
        commands.parse_json_body(b"\xff\xfe")


def test_exec_body() -> None:
    spec = commands.parse_exec_body({"argv": ["/bin/sh"], "env": {"A": "1"}, "user": None, "cwd": "/"})
    assert spec == commands.ExecRequest(argv=["/bin/sh"], user=None, env={"A": "1"}, cwd="/")
    assert commands.parse_exec_body(spec.to_json()) == spec
    assert "tty" not in spec.to_json()  # a pipes exec sends the body it always did
    tty = commands.parse_exec_body({"argv": ["sh"], "tty": True, "size": [40, 120]})
    assert (tty.tty, tty.size) == (True, (40, 120))
    assert commands.parse_exec_body(tty.to_json()) == tty
    assert commands.parse_exec_body({"argv": ["sh"], "tty": True, "size": None}).size is None
    for bad, message in [
        ([], "expected a JSON object"),
        ({"argv": []}, "argv: expected a non-empty list of strings"),
        ({"argv": ["sh", 1]}, "argv: expected a non-empty list of strings"),
        ({"argv": ["sh"], "env": {"A": 1}}, "env: expected an object of strings"),
        ({"argv": ["sh"], "user": 0}, "user: expected a string or null"),
        ({"argv": ["sh"], "pty": True}, "unknown keys"),
        ({"argv": ["sh"], "tty": 1}, "tty: expected true or false"),
        ({"argv": ["sh"], "size": [24, 80]}, "size: a window size needs tty true"),
        ({"argv": ["sh"], "tty": True, "size": [24]}, r"size: expected \[rows, cols\]"),
        ({"argv": ["sh"], "tty": True, "size": [24, 70000]}, r"size: expected \[rows, cols\]"),
    ]:
        with pytest.raises(BadRequestError, match=message):
            commands.parse_exec_body(bad)


def test_import_image_body() -> None:
    assert commands.parse_import_image_body({"path": "/srv/img", "tag": "1"}) == commands.ImportImageRequest("/srv/img", "1")
    assert commands.parse_import_image_body({"path": "/srv/img"}).tag == "latest"
    with pytest.raises(BadRequestError, match="expected an absolute path"):
        commands.parse_import_image_body({"path": "img"})
    with pytest.raises(BadRequestError, match="tag: expected a non-empty string"):
        commands.parse_import_image_body({"path": "/img", "tag": ""})


def test_signal_message() -> None:
    assert commands.parse_signal_message(b'{"signal": 15}') == 15
    for bad in (b'{"signal": 0}', b'{"signal": true}', b'{"sig": 1}', b"[]", b'{"signal": "TERM"}'):
        with pytest.raises(BadRequestError, match="expected"):
            commands.parse_signal_message(bad)


def test_exec_message() -> None:
    assert commands.parse_exec_message(b'{"signal": 2}') == 2
    assert commands.parse_exec_message(b'{"resize": [50, 132]}') == commands.Resize(50, 132)
    for bad in (b'{"resize": [50]}', b'{"resize": [-1, 80]}', b'{"resize": [1, 80], "signal": 2}', b'{"resize": "50x80"}'):
        with pytest.raises(BadRequestError, match="expected"):
            commands.parse_exec_message(bad)


def test_command_path_rejects_unknown_verbs() -> None:
    with pytest.raises(ValueError, match="unknown verb 'explode'"):
        commands.command_path("web", "explode")


def test_remove_image_body() -> None:
    assert commands.parse_remove_image_body({"ref": "sha256:" + "a" * 64}).ref == "sha256:" + "a" * 64
    for bad in ({}, {"ref": ""}, {"ref": 3}, []):
        with pytest.raises(commands.BadRequestError, match=r"image rm request"):
            commands.parse_remove_image_body(bad)
