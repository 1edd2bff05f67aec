"""Read a unit's log for the API: the last N records (in a time window), then
follow its growth. The API sends records as they are stored
(supervisor/logformat.py); supctl turns them into text.

A file is followed event driven (inotify on the file's folder, so a file that
is created later or replaced by rename rotation is still seen) and copytruncate
rotation is handled: when the file shrinks below what was already sent, it is
read again from the start. The journal is read with `journalctl -o json`, each
entry turned into the same record line.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio

from supervisor import inotify, logformat
from supervisor.runtime.reaper import Reaper

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


def rotated_paths(path: Path, keep: int = 9) -> list[Path]:
    """`path`'s rotated files oldest first, then `path` itself."""
    older = [path.with_name(f"{path.name}.{i}") for i in range(keep, 0, -1)]
    return [p for p in older if p.exists()] + [path]


def window_lines(paths: Iterable[Path], n: int, since_ns: int | None, until_ns: int | None) -> tuple[bytes, int]:
    """The last `n` record lines of `paths` (oldest first) within the window,
    and the size of the last file (where following goes on). The whole window
    is scanned: a --since asks for it."""
    kept: deque[bytes] = deque(maxlen=n)
    end = 0
    for path in paths:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            end = 0
            continue
        with f:
            for line in f:
                body = line.rstrip(b"\n")
                if logformat.in_window(logformat.parse_record(body), since_ns, until_ns):
                    kept.append(body + b"\n")
            end = f.tell()
    return b"".join(kept), end


def journal_argv(unit: str, n: int, since_ns: int | None, until_ns: int | None, follow: bool) -> list[str]:
    argv = ["journalctl", "--no-pager", "-o", "json", "--output-fields=MESSAGE,SUPD_STREAM", "-n", str(n)]
    if since_ns is not None:  # whole seconds around the window; records() trims to the nanosecond
        argv.append(f"--since=@{since_ns // 10**9}")
    if until_ns is not None:
        argv.append(f"--until=@{-(-until_ns // 10**9)}")
    if follow:
        argv.append("--follow")
    return [*argv, f"SUPD_UNIT={unit}"]


def journal_record(entry: bytes) -> bytes | None:
    """One `journalctl -o json` line to a record line (None: not an entry)."""
    try:
        data = json.loads(entry)
        usec = int(data["__REALTIME_TIMESTAMP"])
    except (ValueError, KeyError, TypeError):
        return None
    message = data.get("MESSAGE", "")
    if isinstance(message, list):  # journalctl's form for a non-UTF-8 value: its bytes
        text = bytes(message)
    else:
        text = str(message).encode()
    stream = data.get("SUPD_STREAM") if data.get("SUPD_STREAM") in logformat.STREAMS else "stdout"
    return logformat.format_record(usec * 1000, stream, text.replace(b"\n", b" "))


async def journal_records(
    reaper: Reaper, unit: str, n: int, since_ns: int | None, until_ns: int | None, follow: bool
) -> AsyncIterator[bytes]:
    """Record lines from the journal. journalctl runs until its output ends
    (or, following, until the caller stops iterating: then it is killed)."""
    argv = journal_argv(unit, n, since_ns, until_ns, follow)
    read_end, write_end = os.pipe()
    try:
        # started on the loop and tracked before any await: the Reaper must not reap it first
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.DEVNULL)
    except OSError as e:
        os.close(read_end)
        raise FileNotFoundError(f"cannot run journalctl: {e.strerror}") from None
    finally:
        os.close(write_end)
    reaper.track(process.pid)
    os.set_blocking(read_end, False)
    splitter = logformat.LineSplitter()
    try:
        async with reaper.killed_on_error(process.pid):
            while True:
                await anyio.wait_readable(read_end)
                try:
                    data = os.read(read_end, FOLLOW_CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    break
                out = []
                for line in splitter.feed(data):
                    record = journal_record(line)
                    if record is not None and logformat.in_window(
                        logformat.parse_record(record[:-1]), since_ns, until_ns
                    ):
                        out.append(record)
                if out:
                    yield b"".join(out)
            await reaper.wait(process.pid)
    finally:
        process.returncode = -1  # reaped by the Reaper: Popen must not wait
        os.close(read_end)
