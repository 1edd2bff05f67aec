"""The control socket: HTTP/1.1 + JSON over AF_UNIX, spoken with h11 on anyio.

One task per connection. Every connection's peer is checked with SO_PEERCRED:
its level (access.py: root or `admin_group` → admin, `socket_group` →
operator, else nobody) decides which routes it may use. A client that sends
nothing is dropped after `request_timeout` without holding up anyone else;
bodies are capped at 1 MiB; malformed HTTP gets a 400 and the connection is
closed.
"""

from __future__ import annotations

import contextlib
import grp
import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import h11
import structlog

from supervisor.api import access, commands, logtail
from supervisor.api.commands import (
    ApiError,
    BadRequestError,
    Controller,
    MethodNotAllowedError,
    PayloadTooLargeError,
)
from supervisor.api.peercred import PeerCredentials, peer_credentials, peer_groups, resolve_group

log = structlog.get_logger()

SOCKET_MODE = 0o660
REQUEST_TIMEOUT = 10.0
RECEIVE_SIZE = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
EXEC_HANGUP_GRACE = 10.0  # after the exec client goes away: SIGHUP, then SIGKILL after this
# `logs -f` and `events -f` streams one peer (uid) may hold open at once: a
# group member cannot tie up supd's descriptors and watches for everyone.
MAX_FOLLOWERS_PER_PEER = 64
SERVER_HEADER = (b"server", b"supd")
JSON_TYPE = b"application/json"
NDJSON_TYPE = b"application/x-ndjson"
TEXT_TYPE = b"text/plain; charset=utf-8"

_REASONS = {
    200: b"OK",
    101: b"Switching Protocols",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    409: b"Conflict",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
}


class SocketInUseError(Exception):
    def __init__(self, path: Path) -> None:
        super().__init__(f"another supd is listening on {path}")
        self.path = path


class SocketPathError(Exception):
    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path}: {what}; expected a socket file or nothing")
        self.path = path


def clear_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(path, "exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("api_stale_socket_removed", path=str(path))
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise SocketInUseError(path)


async def serve(
    socket_path: Path,
    controller: Controller,
    *,
    group: str | None,
    admin_group: str | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    request_timeout: float = REQUEST_TIMEOUT,
    max_body: int = commands.MAX_BODY_BYTES,
    max_followers: int = MAX_FOLLOWERS_PER_PEER,
) -> None:
    """Serve the control API on `socket_path` until cancelled; removes the socket on exit.

    The socket file is mode 0660, group `group` (socket_group), or
    `admin_group` when only that one is set: the file mode keeps everyone else
    from reaching the HTTP parser at all. With both set and different, an
    admin_group member also needs socket_group to connect (docs/configuration.md).
    """
    socket_path = Path(socket_path)
    groups = access.Groups(
        socket_group=group,
        socket_gid=resolve_group(group, "socket_group") if group is not None else None,
        admin_group=admin_group,
        admin_gid=resolve_group(admin_group, "admin_group") if admin_group is not None else None,
    )
    gid = groups.socket_gid if groups.socket_gid is not None else groups.admin_gid
    clear_stale_socket(socket_path)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    listener = await anyio.create_unix_listener(socket_path, mode=SOCKET_MODE)
    ours = os.stat(socket_path).st_ino
    try:
        if gid is not None:
            os.chown(socket_path, -1, gid)
        log.info("api_listening", path=str(socket_path), group=group, admin_group=admin_group)
        _warn_admins_outside_socket_group(groups)
        limits = _Limits(request_timeout=request_timeout, max_body=max_body, max_followers=max_followers)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            await _Connection(stream, controller, groups, limits).run()

        async with listener:
            task_status.started()
            await listener.serve(handle)
    finally:
        try:
            if os.stat(socket_path).st_ino == ours:
                socket_path.unlink()
        except FileNotFoundError:
            pass


def _warn_admins_outside_socket_group(groups: access.Groups) -> None:
    """admin_group members listed in the group database who are not also in
    socket_group cannot connect (the socket's group is socket_group): say so once."""
    if groups.socket_gid is None or groups.admin_gid is None or groups.socket_gid == groups.admin_gid:
        return
    try:
        outside = sorted(set(grp.getgrgid(groups.admin_gid).gr_mem) - set(grp.getgrgid(groups.socket_gid).gr_mem))
    except KeyError:  # a numeric gid without a group entry: no member list to compare
        return
    if outside:
        log.warning(
            "api_admins_cannot_connect",
            users=outside,
            admin_group=groups.admin_group,
            socket_group=groups.socket_group,
            hint="the socket's group is socket_group: add these users to it too",
        )


class _Limits:
    """Limits shared by every connection of one server."""

    def __init__(self, request_timeout: float, max_body: int, max_followers: int = MAX_FOLLOWERS_PER_PEER) -> None:
        self.request_timeout = request_timeout
        self.max_body = max_body
        self.max_followers = max_followers
        self.followers: dict[int, int] = {}  # uid -> open follow streams

    @contextlib.contextmanager
    def following(self, uid: int) -> Iterator[None]:
        """Count one follow stream of `uid`; TooManyFollowersError past the limit."""
        if self.followers.get(uid, 0) >= self.max_followers:
            raise commands.TooManyFollowersError(uid, self.max_followers)
        self.followers[uid] = self.followers.get(uid, 0) + 1
        try:
            yield
        finally:
            self.followers[uid] -= 1
            if not self.followers[uid]:
                del self.followers[uid]


class _ClientGone(Exception):
    pass


class _Connection:
    """One client connection: a keep-alive loop of requests."""

    def __init__(
        self, stream: anyio.abc.SocketStream, controller: Controller, groups: access.Groups, limits: _Limits
    ) -> None:
        self.stream = stream
        self.controller = controller
        self.groups = groups
        self.level = access.Level.NOBODY
        self.limits = limits
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.peer: PeerCredentials | None = None

    async def run(self) -> None:
        async with self.stream:
            try:
                raw = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
                self.peer = peer_credentials(raw)
                self.level = self._peer_level(self.peer, raw)
                if self.level is access.Level.NOBODY:
                    log.warning("api_forbidden", uid=self.peer.uid, pid=self.peer.pid, gid=self.peer.gid)
                while await self._one_request():
                    self.http.start_next_cycle()
            except (_ClientGone, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                pass
            except Exception:
                log.exception("api_connection_failed", pid=self.peer.pid if self.peer else None)

    def _peer_level(self, peer: PeerCredentials, sock: socket.socket) -> access.Level:
        # Groups as of connect() (SO_PEERGROUPS), like SO_PEERCRED's uid and gid.
        gids = set() if peer.uid == 0 else peer_groups(peer, sock=sock)
        return access.peer_level(peer.uid, gids, self.groups)

    # -- h11 plumbing -------------------------------------------------------

    async def _next_event(self) -> Any:
        while True:
            event = self.http.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive(RECEIVE_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            self.http.receive_data(data)

    async def _send(self, event: Any) -> None:
        data = self.http.send(event)
        if data:
            await self.stream.send(data)

    async def _respond(
        self, status: int, body: bytes, content_type: bytes = JSON_TYPE, *, close: bool = False, extra: list | None = None
    ) -> None:
        headers = [SERVER_HEADER, (b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        headers.extend(extra or [])
        await self._send(h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b"")))
        await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def _respond_error(self, err: ApiError, *, close: bool = False) -> None:
        extra = []
        if isinstance(err, MethodNotAllowedError):
            extra.append((b"allow", ", ".join(err.allowed).encode()))
        await self._respond(err.status, commands.encode_json(err.body()), close=close, extra=extra)

    async def _start_stream(self, content_type: bytes) -> None:
        await self._send(h11.Response(status_code=200, headers=[SERVER_HEADER, (b"content-type", content_type)]))

    # -- request loop -------------------------------------------------------

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        """The next request and its body; None when the client closed or timed out."""
        with anyio.move_on_after(self.limits.request_timeout) as timeout:
            event = await self._next_event()
            if isinstance(event, h11.ConnectionClosed):
                return None
            assert isinstance(event, h11.Request), event
            request = event
            length = _content_length(request)
            if length is not None and length > self.limits.max_body:
                raise PayloadTooLargeError(length, self.limits.max_body)
            body = bytearray()
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self.limits.max_body:
                        raise PayloadTooLargeError(len(body), self.limits.max_body)
                elif isinstance(event, h11.EndOfMessage):
                    return request, bytes(body)
                elif isinstance(event, h11.ConnectionClosed):
                    return None
        if timeout.cancelled_caught:
            log.info("api_request_timeout", pid=self.peer.pid if self.peer else None, seconds=self.limits.request_timeout)
        return None

    async def _one_request(self) -> bool:
        """Serve one request; True to keep the connection for another."""
        try:
            read = await self._read_request()
        except h11.RemoteProtocolError as e:
            await self._respond_error(BadRequestError(f"malformed HTTP request: {e}"), close=True)
            return False
        except PayloadTooLargeError as e:
            await self._respond_error(e, close=True)
            return False
        if read is None:
            return False
        request, body = read
        assert self.peer is not None
        if self.level is access.Level.NOBODY:
            await self._respond_error(commands.ForbiddenError(access.nobody_refusal(self.peer.uid, self.groups)), close=True)
            return False
        method, target = request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace")
        try:
            resolved = commands.resolve(method, target)
            self._check_access(resolved.route.command)
            handled = await self._dispatch(resolved, request, body)
        except ApiError as e:
            log.debug("api_request_refused", method=method, target=target, status=e.status, error=e.message)
            if self.http.our_state is h11.SEND_RESPONSE:
                await self._respond_error(e)
            return self._can_continue()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            return False
        except Exception as e:
            log.exception("api_internal_error", method=method, target=target)
            if self.http.our_state is h11.SEND_RESPONSE:
                await self._respond_error(ApiError(500, f"internal error: {type(e).__name__}: {e}"), close=True)
            return False
        if handled == "closed":
            return False
        return self._can_continue()

    def _check_access(self, command: str) -> None:
        try:
            access.check(command, self.level, self.groups)
        except commands.ForbiddenError:
            assert self.peer is not None
            log.warning(
                "api_forbidden", command=command, uid=self.peer.uid, pid=self.peer.pid, level=self.level.name.lower()
            )
            raise

    def _can_continue(self) -> bool:
        return self.http.our_state is h11.DONE and self.http.their_state is h11.DONE

    async def _dispatch(self, req: commands.Request, request: h11.Request, body: bytes) -> str:
        c, name = self.controller, req.params.get("name", "")
        command = req.route.command
        if command == "logs":
            return await self._logs(name, req.query)
        if command == "events":
            return await self._events(req.query)
        if command == "exec":
            return await self._exec(name, request, body)
        result: Any
        if command == "info":
            result = c.info()
        elif command == "list_units":
            result = c.list_units()
        elif command == "unit_status":
            result = await self._unit_status(name, req.query)
        elif command == "command":
            verb = req.params["verb"]
            log.info("api_command", unit=name, verb=verb, uid=self.peer.uid if self.peer else None)
            result = await c.command(name, verb)
        elif command == "reload":
            log.info("api_command", verb="reload", uid=self.peer.uid if self.peer else None)
            result = await c.reload()
        elif command == "tree":
            result = c.tree()
        elif command == "images":
            result = await c.images()
        elif command == "import_image":
            image = commands.parse_import_image_body(commands.parse_json_body(body))
            result = await c.import_image(image.path, image.tag)
        elif command == "pull_image":
            pull = commands.parse_pull_image_body(commands.parse_json_body(body))
            log.info("api_command", verb="image pull", source=pull.source, uid=self.peer.uid if self.peer else None)
            result = await c.pull_image(pull.source, pull.authfile)
        elif command == "push_image":
            push = commands.parse_push_image_body(commands.parse_json_body(body))
            log.info(
                "api_command", verb="image push", source=push.source, destination=push.destination,
                uid=self.peer.uid if self.peer else None,
            )  # fmt: skip
            result = await c.push_image(push.source, push.destination, push.authfile, push.tls_verify)
        elif command == "remove_image":
            removing = commands.parse_remove_image_body(commands.parse_json_body(body))
            log.info("api_image_rm", ref=removing.ref, uid=self.peer.uid if self.peer else None)
            result = await c.remove_image(removing.ref)
        elif command == "export_kube":
            query = commands.parse_export_kube_query(req.query)
            result = await c.export_kube(name, query.kind, query.namespace, query.image)
        elif command == "prune_images":
            log.info("api_image_prune", uid=self.peer.uid if self.peer else None)
            result = await c.prune_images()
        else:  # a route without a handler is a bug in this module
            raise ApiError(500, f"no handler for API command {command}")
        await self._respond(200, commands.encode_json(result))
        return "done"

    # -- streams ------------------------------------------------------------

    async def _until_client_gone(self, scope: anyio.CancelScope) -> None:
        """Cancel `scope` when the client hangs up (a stream only ends that way)."""
        try:
            while await self.stream.receive(RECEIVE_SIZE):
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        scope.cancel()

    async def _unit_status(self, name: str, query: dict[str, str]) -> dict[str, Any]:
        """The unit's status; with `logs=N`, also its last N log records as
        `log_text` (the file driver's; with journald the client asks /logs),
        so that `supctl status UNIT` is one request, not two."""
        status = self.controller.unit_status(name)
        if "logs" not in query or self.controller.log_driver(name) == "journald":
            return status
        n = commands.query_int(query, "logs", commands.DEFAULT_LOG_LINES)
        text, _offset = await anyio.to_thread.run_sync(logtail.tail_lines, self.controller.log_file(name), n)
        return {**status, "log_text": text.decode("utf-8", "replace")}

    async def _logs(self, name: str, query: dict[str, str]) -> str:
        n = commands.query_int(query, "n", commands.DEFAULT_LOG_LINES)
        follow = commands.query_flag(query, "follow")
        since, until = commands.query_time_ns(query, "since"), commands.query_time_ns(query, "until")
        if self.controller.log_driver(name) == "journald":
            return await self._journal(name, n, since, until, follow)
        path = self.controller.log_file(name)
        if since is None and until is None:
            text, offset = await anyio.to_thread.run_sync(logtail.tail_lines, path, n)
        else:
            paths = logtail.rotated_paths(path)
            text, offset = await anyio.to_thread.run_sync(logtail.window_lines, paths, n, since, until)
        if not follow:
            await self._respond(200, text, TEXT_TYPE)
            return "done"
        with self.limits.following(self._uid()):
            return await self._follow_log(path, text, offset)

    async def _journal(self, name: str, n: int, since: int | None, until: int | None, follow: bool) -> str:
        records = self.controller.read_journal(name, n, since, until, follow)
        if not follow:
            try:
                text = b"".join([chunk async for chunk in records])
            except FileNotFoundError as e:
                raise ApiError(500, str(e)) from None
            await self._respond(200, text, TEXT_TYPE)
            return "done"
        with self.limits.following(self._uid()):
            await self._start_stream(TEXT_TYPE)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_client_gone, tg.cancel_scope)
                try:
                    async for chunk in records:
                        await self._send(h11.Data(data=chunk))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, FileNotFoundError):
                    pass
                tg.cancel_scope.cancel()
            return "closed"

    def _uid(self) -> int:
        assert self.peer is not None
        return self.peer.uid

    async def _follow_log(self, path: Path, text: bytes, offset: int) -> str:
        await self._start_stream(TEXT_TYPE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._until_client_gone, tg.cancel_scope)
            try:
                if text:
                    await self._send(h11.Data(data=text))
                async for chunk in logtail.follow(path, offset):
                    await self._send(h11.Data(data=chunk))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            tg.cancel_scope.cancel()
        return "closed"

    async def _events(self, query: dict[str, str]) -> str:
        n = commands.query_int(query, "n", commands.DEFAULT_EVENTS_N)
        if not commands.query_flag(query, "follow"):
            await self._respond(200, commands.encode_json(self.controller.recent_events(n)))
            return "done"
        with self.limits.following(self._uid()), self.controller.subscribe_events() as subscription:
            recent = self.controller.recent_events(n)
            # An event that landed between subscribing and reading the backlog is in both.
            already_sent = list(recent)
            await self._start_stream(NDJSON_TYPE)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_client_gone, tg.cancel_scope)
                try:
                    for event in recent:
                        await self._send(h11.Data(data=commands.encode_json(event)))
                    async for event in subscription:
                        if event in already_sent:
                            already_sent.remove(event)
                            continue
                        already_sent.clear()
                        await self._send(h11.Data(data=commands.encode_json(event)))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                    pass
                tg.cancel_scope.cancel()
        return "closed"

    # -- exec ---------------------------------------------------------------

    async def _exec(self, name: str, request: h11.Request, body: bytes) -> str:
        upgrade = _header(request, b"upgrade")
        if upgrade is None or upgrade.lower() != commands.EXEC_UPGRADE_TOKEN.encode():
            raise BadRequestError(
                f"exec needs the headers 'Connection: Upgrade' and 'Upgrade: {commands.EXEC_UPGRADE_TOKEN}'"
            )
        if self.http.their_state is not h11.MIGHT_SWITCH_PROTOCOL:
            raise BadRequestError("exec needs the header 'Connection: Upgrade'")
        spec = commands.parse_exec_body(commands.parse_json_body(body))
        self.controller.unit_status(name)  # a missing unit is a plain 404, before the upgrade
        await self._send(
            h11.InformationalResponse(
                status_code=101,
                headers=[SERVER_HEADER, (b"upgrade", commands.EXEC_UPGRADE_TOKEN.encode()), (b"connection", b"upgrade")],
                reason=_REASONS[101],
            )
        )
        leftover, _closed = self.http.trailing_data
        if leftover:
            await self._exec_fail(BadRequestError("exec: data sent before the 101 response; expected the client to wait"))
            return "closed"
        fds: list[int] = []
        try:
            with anyio.move_on_after(self.limits.request_timeout) as waited:
                _msg, fds = await self.stream.receive_fds(1, 3)  # type: ignore[attr-defined]
            if waited.cancelled_caught:
                await self._exec_fail(BadRequestError("exec: no message after the 101 response"))
                return "closed"
            if spec.tty and fds:
                await self._exec_fail(BadRequestError(f"exec: expected no file descriptors with tty, got {len(fds)}"))
                return "closed"
            if not spec.tty and len(fds) != 3:
                await self._exec_fail(BadRequestError(f"exec: expected 3 file descriptors (stdin, stdout, stderr), got {len(fds)}"))
                return "closed"
            if spec.tty:
                # the relay's stdio; the command itself gets the pty
                fds = [os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)] * 3
            try:
                handle = await self.controller.start_exec(
                    name, spec.argv, (fds[0], fds[1], fds[2]), user=spec.user, env=spec.env or {}, cwd=spec.cwd,
                    **({"tty": True, "size": spec.size} if spec.tty else {}),
                )
            except ApiError as e:
                await self._exec_fail(e)
                return "closed"
        finally:
            for fd in set(fds):
                os.close(fd)
        log.info("api_exec", unit=name, pid=handle.pid, argv=spec.argv, tty=spec.tty, uid=self.peer.uid if self.peer else None)
        try:
            if handle.tty is not None:
                await self._send_tty(handle)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read_exec_messages, handle)
                code = await handle.wait()
                tg.cancel_scope.cancel()
        finally:
            handle.close()
        try:
            await self.stream.send(commands.encode_json({"exit": code}))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        return "closed"

    async def _send_tty(self, handle: commands.ExecHandle) -> None:
        """The pty master to the client, which reads and writes it itself: the
        terminal's bytes never pass through supd."""
        assert handle.tty is not None
        try:
            await self.stream.send_fds(commands.encode_json({"tty": True}), [handle.tty])  # type: ignore[attr-defined]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # gone already: _read_exec_messages sees it and hangs up

    async def _exec_fail(self, err: ApiError) -> None:
        await self.stream.send(commands.encode_json({"error": err.message, "status": err.status}))

    async def _read_exec_messages(self, handle: commands.ExecHandle) -> None:
        buffer = b""
        try:
            while True:
                buffer += await self.stream.receive(RECEIVE_SIZE)
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        try:
                            message = commands.parse_exec_message(line)
                            if isinstance(message, commands.Resize):
                                handle.resize(message.rows, message.cols)
                            else:
                                handle.kill(message)
                        except BadRequestError as e:
                            log.warning("api_exec_bad_message", pid=handle.pid, error=e.message)
                        except ProcessLookupError:
                            pass
                        except OSError as e:  # a resize on a pty the kernel hung up already
                            log.warning("api_exec_resize_failed", pid=handle.pid, error=e.strerror)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        # The client went away: hang up on the session's process group like a
        # closed terminal would, and end what ignores that after the grace period.
        # With a pty, our master is the last one: closing it is the hang-up itself.
        log.info("api_exec_client_gone", pid=handle.pid, grace=EXEC_HANGUP_GRACE)
        handle.close()
        for sig, wait in ((signal.SIGHUP, EXEC_HANGUP_GRACE), (signal.SIGKILL, None)):
            try:
                handle.kill_group(sig)
            except ProcessLookupError:
                return
            if wait is not None:
                await anyio.sleep(wait)


def _header(request: h11.Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return value
    return None


def _content_length(request: h11.Request) -> int | None:
    value = _header(request, b"content-length")
    return int(value) if value is not None else None
