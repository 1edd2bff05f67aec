"""supctl's end of exec -t (supervisor/api/terminal.py) against real ptys and
a socketpair standing in for supd's side of the upgraded connection: the
terminal goes raw and comes back, on the exit code and on an error; the
command's last output is not lost; a resize becomes a message."""

from __future__ import annotations

import json
import os
import socket
import termios
import threading
from collections.abc import Iterator

import pytest

from supervisor.api import terminal


@pytest.fixture
def user_tty() -> Iterator[tuple[int, int]]:
    """The user's terminal: (our end, the end supctl has as stdin/stdout)."""
    ours, theirs = os.openpty()
    try:
        yield ours, theirs
    finally:
        os.close(ours)
        os.close(theirs)


def exit_or_raise(message: dict[str, object]) -> int | None:
    if "error" in message:
        raise RuntimeError(message["error"])
    return int(message["exit"]) if "exit" in message else None  # type: ignore[call-overload]


def run_session(sock: socket.socket, stdin: int, stdout: int) -> dict[str, object]:
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["code"] = terminal.Session(sock, b"", stdin, stdout, interactive=True).run(exit_or_raise)
        except Exception as e:  # noqa: BLE001 - handed to the test
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    result["thread"] = thread
    return result


def lines(sock: socket.socket) -> Iterator[dict[str, object]]:
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)
        data = sock.recv(65536)
        if not data:
            return
        buffer += data


def test_raw_while_it_runs_restored_after_the_last_output_and_the_exit(user_tty: tuple[int, int]) -> None:
    ours, theirs = user_tty
    before = termios.tcgetattr(theirs)
    supd, client = socket.socketpair()
    master, slave = os.openpty()  # the unit's pty, read byte by byte like a shell's line editor does
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~(termios.ICANON | termios.ISIG | termios.ECHO)
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    with supd, client:
        session = run_session(client, theirs, theirs)
        socket.send_fds(supd, [b'{"tty": true}\n'], [master])
        os.close(master)
        messages = lines(supd)
        # the first thing it says: the window it has (0x0 here, nobody set one)
        assert next(messages) == {"resize": [0, 0]}
        assert not termios.tcgetattr(theirs)[3] & termios.ECHO  # raw
        # keys go to the unit's terminal as they are: a Ctrl-C is a byte
        os.write(ours, b"ab\x03")
        assert os.read(slave, 100) == b"ab\x03"
        # output written just before the command ended still arrives
        os.write(slave, b"last words\n")
        os.close(slave)
        supd.sendall(b'{"exit": 7}\n')
        session["thread"].join(10)  # type: ignore[attr-defined]
        assert session.get("code") == 7, session
    assert os.read(ours, 100) == b"last words\r\n"  # the unit's pty made the \r
    assert termios.tcgetattr(theirs) == before


def test_restored_on_an_error(user_tty: tuple[int, int]) -> None:
    _ours, theirs = user_tty
    before = termios.tcgetattr(theirs)
    supd, client = socket.socketpair()
    master, slave = os.openpty()
    with supd, client:
        session = run_session(client, theirs, theirs)
        socket.send_fds(supd, [b'{"tty": true}\n'], [master])
        os.close(master)
        assert next(lines(supd)) == {"resize": [0, 0]}
        supd.sendall(b'{"error": "it broke", "status": 500}\n')
        session["thread"].join(10)  # type: ignore[attr-defined]
    os.close(slave)
    assert isinstance(session.get("error"), RuntimeError), session
    assert termios.tcgetattr(theirs) == before
    # and supd hanging up without a word is an EOFError for the caller, terminal restored
    supd, client = socket.socketpair()
    master, slave = os.openpty()
    with supd, client:
        session = run_session(client, theirs, theirs)
        socket.send_fds(supd, [b'{"tty": true}\n'], [master])
        os.close(master)
        supd.shutdown(socket.SHUT_RDWR)
        session["thread"].join(10)  # type: ignore[attr-defined]
    os.close(slave)
    assert isinstance(session.get("error"), EOFError), session
    assert termios.tcgetattr(theirs) == before


def test_window_size_reads_the_first_terminal(user_tty: tuple[int, int]) -> None:
    _ours, theirs = user_tty
    from supervisor.daemon.controller import set_window_size

    set_window_size(theirs, 33, 111)
    r, w = os.pipe()
    try:
        assert terminal.window_size(r, theirs) == (33, 111)
        assert terminal.window_size(r, w) is None
    finally:
        os.close(r)
        os.close(w)
