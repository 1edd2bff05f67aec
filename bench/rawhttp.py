"""The smallest HTTP/1.1 request over supd's Unix socket: no h11, no client
library, one connection per request (`Connection: close`), so its time is the
daemon's answer plus the kernel's socket work and nothing of supctl."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class RawHttpError(Exception):
    def __init__(self, socket_path: Path, request: str, message: str) -> None:
        super().__init__(f"{socket_path}: {request}: {message}")
        self.socket_path = socket_path
        self.request = request


def request(socket_path: Path, method: str, path: str, timeout: float = 60.0) -> tuple[int, bytes]:
    """(status, body) of one request; the body is read until the server closes."""
    what = f"{method} {path}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: supd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(1 << 20):
            chunks.append(data)
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise RawHttpError(socket_path, what, f"expected an HTTP response, got {raw[:80]!r}")
    status_line = head.split(b"\r\n", 1)[0].split()
    if b"chunked" in head.lower():
        body = _dechunk(body)
    return int(status_line[1]), body


def request_json(socket_path: Path, method: str, path: str, timeout: float = 60.0) -> Any:
    status, body = request(socket_path, method, path, timeout)
    if status >= 400:
        raise RawHttpError(socket_path, f"{method} {path}", f"expected a 2xx answer, got {status}: {body[:200]!r}")
    return json.loads(body)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


class EventStream:
    """`GET /v1/events?n=0&follow=1`: supd's events as they happen, one dict each."""

    def __init__(self, socket_path: Path, timeout: float = 60.0) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(str(socket_path))
        self._sock.sendall(b"GET /v1/events?n=0&follow=1 HTTP/1.1\r\nHost: supd\r\n\r\n")
        self._raw = b""
        self._lines: list[bytes] = []
        self._partial = b""
        while b"\r\n\r\n" not in self._raw:
            self._recv()
        head, _, self._raw = self._raw.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0] or b"chunked" not in head.lower():
            raise RawHttpError(socket_path, "GET /v1/events", f"expected a 200 chunked stream, got {head[:120]!r}")

    def _recv(self) -> None:
        data = self._sock.recv(1 << 16)
        if not data:
            raise RawHttpError(self.socket_path, "GET /v1/events", "supd closed the event stream")
        self._raw += data

    def _take_chunks(self) -> None:
        while True:
            size_line, sep, rest = self._raw.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self._partial += rest[:size]
            self._raw = rest[size + 2 :]
            *done, self._partial = self._partial.split(b"\n")
            self._lines += [line for line in done if line.strip()]

    def next(self) -> dict[str, Any]:
        """The next event; socket.timeout when none comes in time."""
        while not self._lines:
            self._take_chunks()
            if not self._lines:
                self._recv()
        return json.loads(self._lines.pop(0))

    def close(self) -> None:
        self._sock.close()
