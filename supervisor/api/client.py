"""supctl's side of the control socket: blocking, stdlib only (http1.py).

supctl must start fast, so nothing here imports anyio or structlog.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator

from supervisor.api import http1, routes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of supctl's start-up)
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

DEFAULT_SOCKET = "/run/supd/supd.sock"  # a str: pathlib costs supctl several ms to import
SOCKET_ENV = "SUPD_SOCKET"
# A checkout's supctl (the launcher `make setup` writes, examples/install_supctl.py)
# sets this to the socket of that checkout's `make run` supd: the fallback when
# no packaged supd's socket exists, so `supctl` finds the dev supd unexported.
CHECKOUT_SOCKET: str | None = None
RECEIVE_SIZE = 64 * 1024
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # by name: `signal` is imported by exec alone
_UNREACHABLE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR)


def default_socket_path() -> str:
    """$SUPD_SOCKET; else /run/supd/supd.sock when it exists (a packaged supd
    always wins); else a checkout's own socket when it exists; else the default
    (whose absence the error then names)."""
    chosen = os.environ.get(SOCKET_ENV)
    if chosen:
        return chosen
    if CHECKOUT_SOCKET and not os.path.exists(DEFAULT_SOCKET) and os.path.exists(CHECKOUT_SOCKET):
        return CHECKOUT_SOCKET
    return DEFAULT_SOCKET


class ClientError(Exception):
    """Anything that keeps supctl from getting an answer; `str()` is one line for the user."""


class DaemonNotRunningError(ClientError):
    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"cannot reach supd at {path}: {reason} (is supd running?)")
        self.path = path


class RequestError(ClientError):
    """supd answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ProtocolError(ClientError):
    pass


class Client:
    """One keep-alive connection to supd, opened on first use."""

    def __init__(self, socket_path: str | os.PathLike[str] | None = None) -> None:
        self.socket_path = os.fspath(socket_path) if socket_path is not None else default_socket_path()
        self._sock: socket.socket | None = None
        self._reader: http1.ResponseReader | None = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(os.fspath(self.socket_path))
        except OSError as e:
            sock.close()
            reason = os.strerror(e.errno) if e.errno else str(e)
            if e.errno in _UNREACHABLE:
                raise DaemonNotRunningError(self.socket_path, reason) from None
            if e.errno in (errno.EACCES, errno.EPERM):
                raise ClientError(
                    f"cannot reach supd at {self.socket_path}: {reason} (expected root or a member of {_socket_group(self.socket_path)})"
                ) from None
            raise ClientError(f"cannot reach supd at {self.socket_path}: {reason}") from None
        return sock

    def _ensure(self) -> tuple[socket.socket, http1.ResponseReader, bool]:
        reused = self._sock is not None
        if self._sock is None or self._reader is None:
            self._sock = self._connect()
            self._reader = http1.ResponseReader(self._sock)
        return self._sock, self._reader, reused

    @staticmethod
    def _encode(method: str, path: str, body: Any, extra: list[tuple[str, str]] | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else b""
        headers = [("content-type", "application/json")] if body is not None else []
        return http1.encode_request(method, path, data, headers + (extra or []))

    @staticmethod
    def _head(reader: http1.ResponseReader) -> int:
        try:
            return reader.read_head()
        except http1.ConnectionClosed:
            raise
        except http1.HttpError as e:
            raise ProtocolError(f"supd sent a malformed response: {e}") from None

    def _send_request(self, method: str, path: str, body: Any) -> http1.ResponseReader:
        """Send one request and read the response head, retrying once on a keep-alive
        connection the daemon had already closed (idle timeout)."""
        while True:
            sock, reader, reused = self._ensure()
            try:
                sock.sendall(self._encode(method, path, body))
                status = self._head(reader)
            except (BrokenPipeError, ConnectionResetError, http1.ConnectionClosed):
                status = 0
            if status >= 200:
                return reader
            self.close()
            if not reused or status:
                raise ProtocolError("supd closed the connection without answering")

    def _read_body(self, reader: http1.ResponseReader) -> bytes:
        try:
            body = reader.read_body()
        except http1.HttpError as e:
            self.close()
            raise ProtocolError(f"supd closed the connection in the middle of a response ({e})") from None
        if not reader.keeps_alive:
            self.close()
        return body

    # -- API ----------------------------------------------------------------

    def raw(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """(HTTP status, body bytes): for text answers such as logs."""
        reader = self._send_request(method, path, body)
        return reader.status, self._read_body(reader)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body)."""
        status, raw = self.raw(method, path, body)
        try:
            return status, json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def text(self, method: str, path: str) -> bytes:
        """A text answer's bytes; `RequestError` for an error status."""
        status, raw = self.raw(method, path)
        if status >= 400:
            try:
                data = json.loads(raw)
            except json.JSONDecodeError:
                data = raw.decode(errors="replace")
            raise RequestError(status, _error_message(status, data))
        return raw

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer; `RequestError` for an error status."""
        status, data = self.request(method, path, body)
        if status >= 400:
            raise RequestError(status, _error_message(status, data))
        return data

    def stream(self, method: str, path: str) -> Iterator[bytes]:
        """The response body, line by line (each with its newline), as it arrives."""
        reader = self._send_request(method, path, None)
        if reader.status >= 400:
            raw = self._read_body(reader)
            try:
                data = json.loads(raw)
            except json.JSONDecodeError:
                data = raw.decode(errors="replace")
            raise RequestError(reader.status, _error_message(reader.status, data))
        pending = b""
        try:
            for part in reader.body_parts():
                pending += part
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line + b"\n"
            if pending:
                yield pending
        except http1.HttpError as e:
            raise ProtocolError(f"supd sent a malformed response: {e}") from None
        finally:
            # A stream ends only when one side hangs up; never reuse its connection.
            self.close()

    def exec(
        self,
        name: str,
        argv: list[str],
        user: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        fds: tuple[int, int, int] = (0, 1, 2),
        tty: bool = False,
        interactive: bool = True,
    ) -> int:
        """Run argv in the unit with our stdio; forwards SIGINT/SIGTERM/SIGHUP; the exit code.

        With `tty`, on a new pty inside the unit instead, fds[0] and fds[1]
        copied to it and from it (fds[0] only if `interactive`)."""
        from supervisor.api import commands  # its request models: only exec needs them

        route = routes.ROUTES_BY_COMMAND["exec"]
        size = None
        if tty:
            from supervisor.api import terminal

            size = terminal.window_size(fds[1], fds[0])
        spec = commands.ExecRequest(argv=list(argv), user=user, env=dict(env or {}), cwd=cwd, tty=tty, size=size)
        sock = self._connect()
        reader = http1.ResponseReader(sock)
        upgrade = [("connection", "upgrade"), ("upgrade", routes.EXEC_UPGRADE_TOKEN)]
        try:
            sock.sendall(self._encode("POST", route.path(name=name), spec.to_json(), upgrade))
            try:
                status = self._head(reader)
            except http1.ConnectionClosed:
                raise ProtocolError("supd closed the connection without answering") from None
            if status >= 200:
                raw = reader.read_body()
                data = json.loads(raw) if raw.strip() else None
                raise RequestError(status, _error_message(status, data))
            if status != 101:
                raise ProtocolError(f"supd did not switch to the exec protocol: HTTP {status}")
            if tty:
                sock.sendall(b"\0")
                session = terminal.Session(sock, reader.rest(), fds[0], fds[1], interactive)
                return self._exec_session(sock, b"", session)
            socket.send_fds(sock, [b"\0"], list(fds))
            return self._exec_session(sock, reader.rest())
        finally:
            sock.close()

    @staticmethod
    def _exec_session(sock: socket.socket, pending: bytes, session: Any = None) -> int:
        def forward(signum: int, _frame: FrameType | None) -> None:
            try:
                sock.sendall(json.dumps({"signal": signum}).encode() + b"\n")
            except OSError:
                pass

        import signal  # exec's alone, as threading: ~1 ms of every other command's start-up
        import threading  # the rest of supctl runs in one thread

        # Python only lets the main thread handle signals; elsewhere (tests) there is nothing to forward.
        in_main = threading.current_thread() is threading.main_thread()
        signals = [getattr(signal, name) for name in FORWARDED_SIGNALS]
        previous = {sig: signal.signal(sig, forward) for sig in signals} if in_main else {}

        def on_message(message: dict[str, Any]) -> int | None:
            if "exit" in message:
                return int(message["exit"])
            if "error" in message:
                raise RequestError(int(message.get("status", 500)), str(message["error"]))
            return None

        try:
            if session is not None:  # exec -t: terminal.Session relays the pty
                from supervisor.api.terminal import TerminalError  # loaded already, with the session

                try:
                    return int(session.run(on_message))
                except EOFError:
                    raise ProtocolError("supd closed the exec connection without an exit code") from None
                except TerminalError as e:
                    raise ProtocolError(str(e)) from None
            while True:
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    code = on_message(json.loads(line))
                    if code is not None:
                        return code
                data = sock.recv(RECEIVE_SIZE)
                if not data:
                    raise ProtocolError("supd closed the exec connection without an exit code")
                pending += data
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _socket_group(path: str) -> str:
    """`group "supd", the socket's group`: who may connect, for an EACCES message
    (admin_group members need it too; docs/configuration.md)."""
    try:
        gid = os.stat(path).st_gid
    except OSError:
        return "the socket's group"
    try:
        import grp  # only on this error path: supctl's start-up stays lean

        name = grp.getgrgid(gid).gr_name
    except KeyError:
        name = str(gid)
    return f'group "{name}", the socket\'s group'


def _error_message(status: int, data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return f"supd answered HTTP {status}: {data!r}"
