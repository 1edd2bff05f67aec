"""Read a unit's log file for the API: the last N lines, then follow its growth.

Following is event driven (inotify on the file's folder, so a file that is
created later or replaced by rename rotation is still seen) and handles
copytruncate rotation: when the file shrinks below what was already sent, it
is read again from the start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

TAIL_BLOCK = 64 * 1024
TAIL_MAX_BYTES = 32 * 1024 * 1024  # never read more than this to find N lines
FOLLOW_CHUNK = 64 * 1024
# A safety net only: inotify wakes the follower; this re-checks the file even if
# an event was missed (e.g. the folder itself was replaced).
FOLLOW_RECHECK_SECONDS = 2.0

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def tail_lines(path: Path, n: int) -> tuple[bytes, int]:
    """The last `n` lines of `path` and the file size they end at.

    Reads backwards in blocks, so a huge log costs only what is returned.
    A missing file is empty."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return b"", 0
    with f:
        end = f.seek(0, os.SEEK_END)
        if n <= 0 or end == 0:
            return b"", end
        pos, buf = end, b""
        while pos > 0 and end - pos < TAIL_MAX_BYTES:
            size = min(TAIL_BLOCK, pos)
            pos -= size
            f.seek(pos)
            buf = f.read(size) + buf
            # A trailing newline ends the last line; it does not start another.
            if buf.count(b"\n", 0, len(buf) - 1) >= n:
                break
    trailing = buf.endswith(b"\n")
    lines = (buf[:-1] if trailing else buf).split(b"\n")
    if pos > 0 or len(lines) > n:
        lines = lines[-n:]
    return b"\n".join(lines) + (b"\n" if trailing else b""), end


class FolderWatch:
    """An inotify watch on one folder; `wait()` returns on any change in it."""

    def __init__(self, folder: Path) -> None:
        libc = _load_libc()
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.watching = libc.inotify_add_watch(self.fd, os.fsencode(folder), WATCH_MASK) >= 0

    async def wait(self, timeout: float) -> None:
        if not self.watching:
            await anyio.sleep(timeout)
            return
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(self.fd)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self.fd, 64 * 1024):
                    return
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                raise

    def close(self) -> None:
        os.close(self.fd)


async def follow(path: Path, offset: int) -> AsyncIterator[bytes]:
    """Yield what is appended to `path` after `offset`, forever.

    Copytruncate (size below offset) → from 0. Replaced file (new inode) → from 0."""
    watch = FolderWatch(path.parent)
    f = None
    inode: int | None = None
    try:
        while True:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_ino != inode:
                if f is not None:
                    f.close()
                    offset = 0
                f = open(path, "rb")
                inode = st.st_ino
            if f is not None:
                size = os.fstat(f.fileno()).st_size
                if size < offset:
                    offset = 0
                if size > offset:
                    f.seek(offset)
                    data = f.read(min(FOLLOW_CHUNK, size - offset))
                    offset += len(data)
                    if data:
                        yield data
                        continue
            await watch.wait(FOLLOW_RECHECK_SECONDS)
    finally:
        if f is not None:
            f.close()
        watch.close()
