"""supctl exec -t: the client's end of a pty session.

supd sends the master of a pty it had opened inside the unit; this module
copies the client's terminal to it and back, keeps the window size in step
(a `{"resize": [rows, cols]}` line to supd on SIGWINCH) and holds the
client's terminal in raw mode meanwhile, so Ctrl-C, Ctrl-Z and every other
key reach the unit's terminal as bytes and its line discipline (not ours)
turns them into signals. Blocking, stdlib only; imported by exec -t alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import termios
import threading
import tty
from collections.abc import Callable, Iterator

RECEIVE_SIZE = 64 * 1024
# After the exit code: how long the pty may stay silent before the session is
# over (its last output can still be on its way through the kernel's buffer,
# and a background job inside may hold the terminal open for ever).
DRAIN_QUIET = 0.2


class TerminalError(Exception):
    """The session broke in a way the exit code cannot tell (no pty came)."""


def window_size(*fds: int) -> tuple[int, int] | None:
    """(rows, cols) of the first of `fds` that is a terminal."""
    for fd in fds:
        try:
            rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            continue
        return rows, cols
    return None


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The terminal on `fd` raw (no echo, no line editing, no signals from
    keys, no output processing) until the block ends, however it ends."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            select.select([], [fd], [])


class Session:
    """One exec -t session over the upgraded connection `sock`."""

    def __init__(self, sock: socket.socket, pending: bytes, stdin: int, stdout: int, interactive: bool) -> None:
        self.sock = sock
        self.buffer = pending
        self.stdin = stdin
        self.stdout = stdout
        self.interactive = interactive
        self.master: int | None = None
        self.stdout_open = True

    def send(self, message: dict[str, object]) -> None:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass

    def _receive(self) -> None:
        data, fds, _flags, _addr = socket.recv_fds(self.sock, RECEIVE_SIZE, 1)
        for fd in fds:
            if self.master is None:
                self.master = fd
            else:
                os.close(fd)
        if not data:
            raise EOFError
        self.buffer += data

    def _messages(self) -> Iterator[dict[str, object]]:
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            yield json.loads(line)

    def run(self, on_message: Callable[[dict[str, object]], int | None]) -> int:
        """Relay until supd sends the exit code (`on_message` returns it, or
        raises for an error message); EOFError if supd hangs up first."""
        # raw from the start, as docker does, so keys typed while the command
        # starts are not echoed here as well; an error (no such unit, no such
        # command) comes back after the terminal is restored
        raw = raw_mode(self.stdin) if self.interactive and os.isatty(self.stdin) else contextlib.nullcontext()
        try:
            with raw:
                while self.master is None:
                    self._receive()
                    for message in self._messages():
                        code = on_message(message)
                        if code is not None:
                            return code
                        if message.get("tty") and self.master is None:  # the fd was dropped (our fd limit?)
                            raise TerminalError("supd sent the terminal but no descriptor for it arrived")
                # Python lets only the main thread handle signals (tests run us elsewhere)
                in_main = threading.current_thread() is threading.main_thread()
                previous = signal.signal(signal.SIGWINCH, lambda _n, _f: self._resized()) if in_main else None
                try:
                    self._resized()  # it may have changed while the command started
                    return self._relay(on_message)
                finally:
                    if in_main:
                        signal.signal(signal.SIGWINCH, previous if previous is not None else signal.SIG_DFL)
        finally:
            if self.master is not None:
                os.close(self.master)

    def _resized(self) -> None:
        size = window_size(self.stdout, self.stdin)
        if size is not None:
            self.send({"resize": list(size)})

    def _relay(self, on_message: Callable[[dict[str, object]], int | None]) -> int:
        master = self.master
        assert master is not None
        os.set_blocking(master, False)
        to_master = b""
        stdin_open, master_open = self.interactive, True
        while True:
            for message in self._messages():
                code = on_message(message)
                if code is not None:
                    if master_open:
                        self._drain(master)
                    return code
            readers: list[int | socket.socket] = [self.sock]
            writers: list[int] = []
            if master_open:
                readers.append(master)
                if to_master:
                    writers.append(master)
            if stdin_open and not to_master:
                readers.append(self.stdin)
            readable, writable, _ = select.select(readers, writers, [])
            if self.sock in readable:
                self._receive()
            if master in readable:
                master_open = self._copy_out(master)
            if self.stdin in readable:
                try:
                    data = os.read(self.stdin, RECEIVE_SIZE)
                except OSError:  # EIO: our own terminal was hung up
                    data = b""
                if data:
                    to_master += data
                else:
                    stdin_open = False
            if master in writable:
                try:
                    to_master = to_master[os.write(master, to_master) :]
                except BlockingIOError:
                    pass
                except OSError:  # hung up: nobody left to read it
                    to_master, master_open = b"", False

    def _copy_out(self, master: int) -> bool:
        """One read of the pty's output onto stdout; False once it is hung up
        (every process that had the terminal open is gone: EIO)."""
        try:
            data = os.read(master, RECEIVE_SIZE)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        if self.stdout_open:
            try:
                _write_all(self.stdout, data)
            except OSError:  # our terminal is gone (EIO) or nobody reads (EPIPE): keep draining, drop it
                self.stdout_open = False
        return True

    def _drain(self, master: int) -> None:
        while select.select([master], [], [], DRAIN_QUIET)[0]:
            if not self._copy_out(master):
                return
