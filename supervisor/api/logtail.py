"""Read a unit's log file for the API: the last N lines, then follow its growth.

Following is event driven (inotify on the file's folder, so a file that is
created later or replaced by rename rotation is still seen) and handles
copytruncate rotation: when the file shrinks below what was already sent, it
is read again from the start.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from supervisor import inotify

TAIL_BLOCK = 64 * 1024
TAIL_MAX_BYTES = 32 * 1024 * 1024  # never read more than this to find N lines
FOLLOW_CHUNK = 64 * 1024
# A safety net only: inotify wakes the follower; this re-checks the file even if
# an event was missed (e.g. the folder itself was replaced).
FOLLOW_RECHECK_SECONDS = 2.0

# Anything that can change what `follow` reads: writes, truncation, a file
# created or renamed into place (rename rotation), or removed.
WATCH_MASK = (
    inotify.IN_MODIFY | inotify.IN_ATTRIB | inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_FROM
    | inotify.IN_MOVED_TO | inotify.IN_CREATE | inotify.IN_DELETE
)  # fmt: skip


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


async def follow(path: Path, offset: int) -> AsyncIterator[bytes]:
    """Yield what is appended to `path` after `offset`, forever.

    Copytruncate (size below offset) → from 0. Replaced file (new inode) → from 0."""
    # On the folder, not the file: a file created later, or replaced by rename
    # rotation, is still seen. One shared inotify instance (supervisor/inotify.py).
    try:
        watch = inotify.shared().watch(path.parent, WATCH_MASK)
    except FileNotFoundError:
        watch = inotify.Watch(None, path.parent, None)  # no folder yet: poll
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
