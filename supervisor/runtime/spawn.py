"""Daemon side of the spawner (runtime/shim.py).

`Spawner.launch(reaper)` starts the spawner with subprocess (C code between
fork and exec), so call it before the daemon has threads or not — it is safe
either way, and all Python-level forking happens in the single-threaded
spawner. `await spawner.spawn(spec, stdio)` returns a `Pending` once the
process exists, sits where the daemon can put it into a cgroup and waits for
its go; `await pending.go()` returns when the exec succeeded.

Many tasks may spawn at once: requests carry ids, and whichever task holds
the read lock reads the next reply and files it under its id.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog

from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spec import SpawnSpec

log = structlog.get_logger()

SHIM_PATH = Path(__file__).with_name("shim.py")
MAX_MESSAGE = 1 << 16  # replies and control messages are small
# how long close() gives the spawner to notice EOF and exit
SPAWNER_EXIT_TIMEOUT = 5.0


class SpawnError(Exception):
    """A process could not be started; `reason` is the shim's message, e.g.
    `exec /bin/x: No such file or directory`."""

    def __init__(self, reason: str, argv: tuple[str, ...] = ()) -> None:
        self.reason = reason
        self.argv = argv
        super().__init__(reason)


def _receive_nowait(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4)
    except BlockingIOError:
        return None
    return data, fds


async def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """Next message (None at EOF) and the fds that came with it."""
    while True:
        got = _receive_nowait(sock)
        if got is not None:
            data, fds = got
            return (json.loads(data) if data else None), fds
        await anyio.wait_readable(sock)


async def _send(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    while True:
        try:
            socket.send_fds(sock, [data], list(fds))
            return
        except BlockingIOError:
            await anyio.wait_writable(sock)


class Pending:
    """A spawned process waiting for its go. `pid` is a host pid and already
    a child of the daemon, tracked by the reaper."""

    def __init__(self, pid: int, control: socket.socket, reaper: Reaper, argv: tuple[str, ...]) -> None:
        self.pid = pid
        # exec -t: the pty master the process sent with its ready (ours to close)
        self.tty: int | None = None
        self._control: socket.socket | None = control
        self._reaper = reaper
        self._argv = argv
        self._reaped = False
        # the pid of its log relay (LogRequest), tracked by the reaper: wait_relay()
        self.relay: int | None = None

    async def wait_ready(self) -> None:
        """Wait until the process has set itself up and waits for its go;
        SpawnError (and the process reaped) if the setup failed."""
        assert self._control is not None
        try:
            message, extra = await _receive(self._control)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.abort()
            raise
        if message is not None and message.get("ready") and message.get("tty") and len(extra) == 1:
            self.tty = extra.pop()
        for fd in extra:
            os.close(fd)
        if message is None or not message.get("ready"):
            reason = "process exited before it was ready" if message is None else str(message.get("error"))
            await self._fail(reason)

    async def go(self) -> None:
        """Let it exec; returns once exec succeeded (the CLOEXEC control
        socket closed), raises SpawnError with the reason otherwise."""
        control = self._control
        if control is None:
            raise SpawnError("process was already started or aborted", self._argv)
        try:
            await _send(control, {"go": True})
        except (BrokenPipeError, ConnectionResetError):
            # died before its go (killed from outside)
            await self._fail("process exited before it was started")
        message, fds = await _receive(control)
        for fd in fds:
            os.close(fd)
        self._close_control()
        if message is not None and "error" in message:
            await self._fail(str(message["error"]))
        log.debug("spawn_exec", pid=self.pid, argv=self._argv[:1])

    async def _fail(self, reason: str) -> None:
        self._close_control()
        with anyio.CancelScope(shield=True):
            await self._reap()
        raise SpawnError(reason, self._argv)

    async def abort(self) -> None:
        """Kill it (whatever stage it is in) and reap it. Idempotent."""
        self._close_control()
        if self._reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with anyio.CancelScope(shield=True):
            await self._reap()

    async def _reap(self) -> None:
        await self._reap_process()
        if self.relay is not None:
            await wait_relay(self._reaper, self.relay)
            self.relay = None

    async def _reap_process(self) -> None:
        if not self._reaped:
            try:
                await self._reaper.wait(self.pid)
            except ChildProcessError:
                pass
            self._reaped = True

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None


@dataclass(frozen=True)
class LogRequest:
    """Ask the spawner for a log relay: the process's stdout and stderr become
    pipes to it, and it writes timestamped records to the sink passed as stdout
    (the unit's log file, or a datagram socket to journald). shim.py: run_log_relay."""

    unit: str
    driver: str  # "file" | "journald"


# A relay ends as soon as the last writer of its pipes is gone (every process of
# the unit): it only has lines left to write then.
RELAY_EXIT_TIMEOUT = 5.0


async def wait_relay(reaper: Reaper, pid: int) -> None:
    """Until the log relay `pid` has written its last line and exited. A
    process of the unit that escaped its cgroup and keeps the pipe open would
    keep the relay alive: then stop waiting (it is reaped as an orphan later)."""
    with anyio.move_on_after(RELAY_EXIT_TIMEOUT):
        try:
            await reaper.wait(pid)
        except ChildProcessError:
            pass
        return
    reaper.untrack(pid)
    log.warning("log_relay_still_running", pid=pid)


class Spawner:
    def __init__(self, reaper: Reaper) -> None:
        self._reaper = reaper
        self._ids = itertools.count(1)
        self._replies: dict[int, tuple[dict[str, Any], list[int]]] = {}
        self._abandoned: set[int] = set()
        self._read_lock = anyio.Lock()
        self._send_lock = anyio.Lock()  # anyio allows one task waiting to write
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self._broken: set[int] = set()  # generations whose spawner died

    @classmethod
    def launch(cls, reaper: Reaper) -> Spawner:
        """Start the spawner process (sync)."""
        spawner = cls(reaper)
        spawner._start()
        return spawner

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SHIM_PATH), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        # the reaper must leave the spawner to Popen
        self._reaper.track(self._process.pid)
        ours.setblocking(False)
        self._sock = ours
        self._generation += 1
        log.debug("spawner_started", pid=self._process.pid)

    def _alive(self) -> bool:
        return (
            self._sock is not None
            and self._process is not None
            and self._process.poll() is None
            and self._generation not in self._broken
        )

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._process is not None:
            try:
                self._process.wait(timeout=SPAWNER_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._reaper.untrack(self._process.pid)
            self._process = None

    def close(self) -> None:
        """Stop the spawner (it exits when its socket closes)."""
        self._stop()

    async def spawn(self, spec: SpawnSpec, stdio: tuple[int, int, int], output: LogRequest | None = None) -> Pending:
        """Start `spec` up to its go. Raises SpawnError on any setup failure."""
        pending = await self.start(spec, stdio, output)
        await pending.wait_ready()
        return pending

    async def start(self, spec: SpawnSpec, stdio: tuple[int, int, int], output: LogRequest | None = None) -> Pending:
        """Fork `spec`'s process and return as soon as its pid is known, while
        it is still setting up (mounts, pivot_root ...). The caller may place it
        in its cgroup meanwhile — moving a task can wait ~10 ms for an RCU grace
        period, which this overlaps with the setup — then `wait_ready()`."""
        if not self._alive():
            if self._process is not None:
                log.warning("spawner_relaunched", old_pid=self._process.pid)
            self._stop()
            self._start()
        assert self._sock is not None
        request_id = next(self._ids)
        generation = self._generation
        try:
            async with self._send_lock:
                request: dict[str, Any] = {"op": "spawn", "id": request_id, "spec": spec.to_json()}
                if output is not None:
                    request["log"] = {"unit": output.unit, "driver": output.driver}
                await _send(self._sock, request, stdio)
            reply, fds = await self._reply(request_id, generation)
        except (BrokenPipeError, ConnectionResetError):
            self._broken.add(generation)
            raise SpawnError("the spawner exited", spec.argv) from None
        except BaseException:
            self._abandoned.add(request_id)
            raise
        if "error" in reply:
            raise SpawnError(str(reply["error"]), spec.argv)
        pending = Pending(int(reply["pid"]), socket.socket(fileno=fds[0]), self._reaper, spec.argv)
        pending.relay = int(reply["relay"]) if "relay" in reply else None
        for fd in fds[1:]:
            os.close(fd)
        assert pending._control is not None
        pending._control.setblocking(False)
        return pending

    async def _reply(self, request_id: int, generation: int) -> tuple[dict[str, Any], list[int]]:
        while request_id not in self._replies:
            async with self._read_lock:
                if request_id in self._replies:
                    break
                if generation != self._generation or generation in self._broken:
                    raise SpawnError("the spawner exited")
                await self._read_one_reply(generation)
        return self._replies.pop(request_id)

    async def _read_one_reply(self, generation: int) -> None:
        sock = self._sock
        assert sock is not None
        message, fds = await _receive(sock)
        if message is None:
            self._broken.add(generation)
            log.error("spawner_exited", pid=self.pid)
            raise SpawnError("the spawner exited")
        request_id = message.get("id")
        if "pid" in message and request_id not in self._abandoned:
            # before any await: the reaper must not reap it as an orphan
            self._reaper.track(int(message["pid"]))
            if "relay" in message:
                self._reaper.track(int(message["relay"]))
        if request_id in self._abandoned or not isinstance(request_id, int):
            # nobody waits: closing the control socket makes it exit, and
            # the reaper reaps it as an orphan
            self._abandoned.discard(request_id)  # type: ignore[arg-type]
            for fd in fds:
                os.close(fd)
            return
        self._replies[request_id] = (message, fds)
