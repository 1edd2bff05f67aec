"""The client half of HTTP/1.1 that supctl needs to talk to supd: a request
out, a response head and body in (Content-Length, chunked, or up to the close).

Why not h11 here: importing it (with the dataclasses, enum and re it pulls
in) took longer than the rest of `supctl list`. The server keeps h11; this
reader only has to understand what a correct HTTP/1.1 server sends, and
calls anything else a protocol error.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

RECEIVE_SIZE = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024


class HttpError(Exception):
    """The peer's bytes are not an HTTP/1.1 response (or the connection ended inside one)."""


class ConnectionClosed(HttpError):
    """The peer closed the connection before the first byte of a response."""


def encode_request(method: str, target: str, body: bytes, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: supd", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseReader:
    """Responses, one after another, from one connection; bytes past the
    current response stay buffered for the next one (keep-alive) or the
    caller (`rest()` after a 101 Switching Protocols)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.status = 0
        self.headers: dict[str, str] = {}

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(RECEIVE_SIZE)
        except ConnectionResetError:
            data = b""
        self._buffer += data
        return bool(data)

    def read_head(self) -> int:
        """Read a status line and headers; the status code."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise HttpError(f"a response head over {MAX_HEAD_BYTES} bytes")
            if not self._fill():
                if self._buffer:
                    raise HttpError("the connection ended inside a response head")
                raise ConnectionClosed("the connection closed before a response")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"not a header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        self.status, self.headers = int(code), headers
        return self.status

    @property
    def keeps_alive(self) -> bool:
        """Whether the connection can carry another request after this response's body."""
        return self.headers.get("connection", "").lower() != "close" and (
            "content-length" in self.headers or self._chunked
        )

    @property
    def _chunked(self) -> bool:
        return self.headers.get("transfer-encoding", "").lower() == "chunked"

    def body_parts(self) -> Iterator[bytes]:
        """The body as it arrives (framing removed)."""
        if 100 <= self.status < 200 or self.status in (204, 304):
            return
        if self._chunked:
            yield from self._chunks()
        elif "content-length" in self.headers:
            try:
                left = int(self.headers["content-length"])
            except ValueError:
                raise HttpError(f"content-length {self.headers['content-length']!r}") from None
            while left > 0:
                if not self._buffer and not self._fill():
                    raise HttpError("the connection ended inside a response body")
                part, self._buffer = self._buffer[:left], self._buffer[left:]
                left -= len(part)
                yield part
        else:  # no framing: the body runs to the close
            while self._buffer or self._fill():
                part, self._buffer = self._buffer, b""
                yield part

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._fill():
                raise HttpError("the connection ended inside a chunked body")
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(f"a chunk size {size_text[:20]!r}") from None
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return
            while len(self._buffer) < size + 2:
                if not self._fill():
                    raise HttpError("the connection ended inside a chunked body")
            part, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
            yield part

    def read_body(self) -> bytes:
        return b"".join(self.body_parts())

    def rest(self) -> bytes:
        """Bytes already received past the response head (after a 101: the new protocol's)."""
        rest, self._buffer = self._buffer, b""
        return rest
