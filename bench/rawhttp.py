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
