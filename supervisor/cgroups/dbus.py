"""A small async D-Bus client for systemd's Manager API, on jeepney (asyncio).

Two ways in, like systemctl and runc:
* the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else /run/dbus/system_bus_socket):
  a real bus daemon, so we say Hello and ask it (AddMatch) to route JobRemoved;
* systemd's private socket /run/systemd/private when there is no bus (early
  boot, minimal containers): a direct peer-to-peer connection, so no Hello and
  no match rules (its server answers Hello with "Unknown object").

Error replies become `DBusError(name, message)`. A connection found closed is
re-opened and the call retried once, as runc's `retryOnDisconnect` does after
a dbus-daemon restart. systemd only emits JobRemoved to subscribers, so every
connection calls Manager.Subscribe() first.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import anyio
import structlog
from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageType, new_method_call
from jeepney.auth import BEGIN, Authenticator
from jeepney.bus import get_bus
from jeepney.bus_messages import message_bus
from jeepney.io.asyncio import DBusConnection, DBusRouter
from jeepney.io.common import RouterClosed

log = structlog.get_logger()

SYSTEM_BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
SYSTEM_BUS_ADDRESS = "unix:path=/run/dbus/system_bus_socket"
SYSTEMD_PRIVATE_ADDRESS = "unix:path=/run/systemd/private"
PRIVATE_SOCKET_SUFFIX = "/systemd/private"

SYSTEMD_BUS_NAME = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER_INTERFACE = "org.freedesktop.systemd1.Manager"
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
SCOPE_INTERFACE = "org.freedesktop.systemd1.Scope"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
PEER_INTERFACE = "org.freedesktop.DBus.Peer"
JOB_REMOVED = "JobRemoved"

MANAGER = DBusAddress(SYSTEMD_PATH, SYSTEMD_BUS_NAME, MANAGER_INTERFACE)

# Bounded memory for JobRemoved signals nobody waits for (yet): a job can end
# before the caller has read StartTransientUnit's reply and registered.
EARLY_JOB_RESULTS = 1024
AUTH_TIMEOUT = 10.0
CALL_TIMEOUT = 30.0
PING_WAIT = 0.1


class DBusError(Exception):
    """An error reply (or a broken connection); `name` is the D-Bus error name."""

    def __init__(self, name: str, message: str, method: str = "") -> None:
        self.name = name
        self.message = message
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{name}: {message}")


class DBusConnectionError(DBusError):
    """The connection could not be opened, or closed under a call."""

    NAME = "supd.DBus.ConnectionClosed"

    def __init__(self, address: str, reason: str, method: str = "") -> None:
        self.address = address
        super().__init__(self.NAME, f"{address}: {reason}", method)


def default_address() -> str:
    """The system bus if there is one, else systemd's private socket."""
    env = os.environ.get(SYSTEM_BUS_ENV)
    if env:
        return env
    if Path(get_bus(SYSTEM_BUS_ADDRESS)).exists():
        return SYSTEM_BUS_ADDRESS
    return SYSTEMD_PRIVATE_ADDRESS


def is_private_socket(address: str) -> bool:
    return get_bus(address).endswith(PRIVATE_SOCKET_SUFFIX)


class _JobResults:
    """Receives JobRemoved signals (it quacks like the queue jeepney's filters
    put messages into) and hands each job's result to whoever waits for it."""

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._early: OrderedDict[str, str] = OrderedDict()

    def put_nowait(self, msg: Message) -> None:
        _id, job, _unit, result = msg.body
        fut = self._waiters.pop(job, None)
        if fut is not None and not fut.done():
            fut.set_result(result)
            return
        self._early[job] = result
        while len(self._early) > EARLY_JOB_RESULTS:
            self._early.popitem(last=False)

    async def wait(self, job: str, timeout: float) -> str:
        if job in self._early:
            return self._early.pop(job)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[job] = fut
        try:
            with anyio.fail_after(timeout):
                return await fut
        finally:
            self._waiters.pop(job, None)

    def fail_all(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)


JOB_REMOVED_RULE = MatchRule(
    type="signal", interface=MANAGER_INTERFACE, member=JOB_REMOVED, path=SYSTEMD_PATH
)


class Connection:
    """One connection to systemd; re-opened transparently once if found closed."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.is_bus = not is_private_socket(address)
        self._conn: DBusConnection | None = None
        self._router: DBusRouter | None = None
        self._jobs = _JobResults()
        self._filter: Any = None
        self._lock = asyncio.Lock()

    async def _open(self) -> None:
        path = get_bus(self.address)
        try:
            with anyio.fail_after(AUTH_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(path)
                auth = Authenticator()
                for request in auth:
                    writer.write(request)
                    await writer.drain()
                    data = await reader.read(1024)
                    if not data:
                        # systemd's private socket hangs up on peers outside its pid namespace
                        raise DBusConnectionError(self.address, "closed during authentication")
                    auth.feed(data)
                writer.write(BEGIN)
                await writer.drain()
        except (OSError, TimeoutError) as e:
            raise DBusConnectionError(self.address, f"cannot connect: {e!r}") from e
        self._conn = DBusConnection(reader, writer)
        self._router = DBusRouter(self._conn)
        self._filter = self._router.filter(JOB_REMOVED_RULE, queue=self._jobs)  # type: ignore[arg-type]
        try:
            await self._start_session()
        except BaseException:
            await self._close_quietly()
            raise
        log.debug("dbus_connected", address=self.address, bus=self.is_bus)

    async def _start_session(self) -> None:
        assert self._conn is not None
        if not self.is_bus:
            await self._wake_private_server()
        else:
            (unique_name,) = await self._raw_call(new_method_call(message_bus, "Hello"))
            self._conn.unique_name = unique_name
            await self._raw_call(
                new_method_call(message_bus, "AddMatch", "s", (JOB_REMOVED_RULE.serialise(),))
            )
        await self._raw_call(new_method_call(MANAGER, "Subscribe"))

    async def _wake_private_server(self) -> None:
        """Ping until systemd answers. Its private server (sd-bus, seen with
        systemd 252) can leave a message that arrived in the same read as our
        BEGIN unprocessed until more bytes arrive; each new ping wakes it, and
        a ping's late reply is simply dropped."""
        ping = DBusAddress(SYSTEMD_PATH, SYSTEMD_BUS_NAME, PEER_INTERFACE)
        with anyio.fail_after(AUTH_TIMEOUT):
            attempt = 0
            while True:
                attempt += 1
                with anyio.move_on_after(min(PING_WAIT * attempt, 1.0)):
                    await self._raw_call(new_method_call(ping, "Ping"))
                    if attempt > 1:
                        log.debug("dbus_private_server_woken", address=self.address, pings=attempt)
                    return

    async def _close_quietly(self) -> None:
        router, conn = self._router, self._conn
        self._router = self._conn = None
        if self._filter is not None:
            self._filter.close()
            self._filter = None
        self._jobs.fail_all(DBusConnectionError(self.address, "connection closed while waiting for a job"))
        if router is not None:
            try:
                await router.__aexit__(None, None, None)
            except Exception:  # the receiver died with the connection; that is why we are here
                pass
        if conn is not None:
            try:
                await conn.close()
            except OSError:
                pass

    async def _raw_call(self, msg: Message) -> tuple[Any, ...]:
        assert self._router is not None
        method = msg.header.fields.get(HeaderFields.member, "")
        with anyio.fail_after(CALL_TIMEOUT):
            reply = await self._router.send_and_get_reply(msg)
        if reply.header.message_type == MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "org.freedesktop.DBus.Error.Failed")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise DBusError(name, text, method)
        return tuple(reply.body)

    async def ensure_open(self) -> None:
        async with self._lock:
            if self._router is None:
                await self._open()

    async def call(
        self, addr: DBusAddress, method: str, signature: str | None = None, body: tuple[Any, ...] = ()
    ) -> tuple[Any, ...]:
        """Call `method`; error replies raise DBusError. Retried once on a fresh
        connection if the old one turns out to be closed."""
        for attempt in (1, 2):
            await self.ensure_open()
            try:
                return await self._raw_call(new_method_call(addr, method, signature, body))
            except (RouterClosed, EOFError, ConnectionError, BrokenPipeError) as e:
                log.warning("dbus_disconnected", address=self.address, method=method, attempt=attempt, error=repr(e))
                await self._close_quietly()
                if attempt == 2:
                    raise DBusConnectionError(self.address, f"closed: {e!r}", method) from e
        raise AssertionError("unreachable")

    async def get_property(self, path: str, interface: str, name: str) -> Any:
        props = DBusAddress(path, SYSTEMD_BUS_NAME, PROPERTIES_INTERFACE)
        ((_sig, value),) = await self.call(props, "Get", "ss", (interface, name))
        return value

    async def wait_job(self, job: str, timeout: float) -> str:
        """The result of job `job` ("done", "failed", "canceled", "timeout",
        "dependency", "skipped"); TimeoutError after `timeout` seconds."""
        return await self._jobs.wait(job, timeout)

    async def aclose(self) -> None:
        async with self._lock:
            await self._close_quietly()


async def open_connection(address: str | None = None) -> Connection:
    """Connect to systemd at `address` (default: see `default_address`)."""
    conn = Connection(address or default_address())
    await conn.ensure_open()
    return conn
