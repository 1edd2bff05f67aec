"""supctl's HTTP/1.1 response reader against byte-exact server answers (a socketpair)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from supervisor.api import http1


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_request_bytes() -> None:
    raw = http1.encode_request("POST", "/v1/units/web/start", b"{}", [("content-type", "application/json")])
    assert raw == b"POST /v1/units/web/start HTTP/1.1\r\nhost: supd\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"


def test_two_responses_on_one_connection(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"HTTP/1.1 200 \r\nContent-Length: 5\r\n\r\nhello" b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}")
    reader = http1.ResponseReader(ours)
    assert reader.read_head() == 200 and reader.read_body() == b"hello" and reader.keeps_alive
    assert reader.read_head() == 404 and reader.headers["content-length"] == "2" and reader.read_body() == b"{}"


def test_chunked_body_and_the_close(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nline1\n\r\n3;x=y\r\nab\n\r\n0\r\n\r\n")
    reader = http1.ResponseReader(ours)
    assert reader.read_head() == 200
    assert list(reader.body_parts()) == [b"line1\n", b"ab\n"]
    assert not reader.keeps_alive


def test_switching_protocols_keeps_what_follows(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"HTTP/1.1 101 \r\nUpgrade: supd-exec\r\nConnection: Upgrade\r\n\r\n{\"exit\": 0}\n")
    reader = http1.ResponseReader(ours)
    assert reader.read_head() == 101 and reader.read_body() == b"" and reader.rest() == b'{"exit": 0}\n'


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", b"HTTP/1.1 200 OK\r\ncontent-le"],
)  # fmt: skip
def test_anything_else_is_an_http_error(pair: tuple[socket.socket, socket.socket], answer: bytes) -> None:
    ours, theirs = pair
    theirs.sendall(answer)
    theirs.shutdown(socket.SHUT_WR)
    reader = http1.ResponseReader(ours)
    with pytest.raises(http1.HttpError):
        reader.read_head()
        reader.read_body()


def test_a_close_before_any_byte_is_told_apart(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(http1.ConnectionClosed):
        http1.ResponseReader(ours).read_head()
