"""inotify(7): the one place supd uses it (log followers, cgroup.events and
memory.events waits).

One inotify instance per supd process carries every watch. The kernel allows
few instances per user (fs.inotify.max_user_instances, 128 by default) but
thousands of watches: when each follower had its own instance, ~130
`supctl logs -f` used up the instances and then every stop that waited on
cgroup.events failed. Now a watch that cannot be had (no instance could be
made, or fs.inotify.max_user_watches is reached) polls instead: it wakes on
its timeout only, slower but never an error.

anyio lets one task at a time wait for an fd to become readable, so waiters
take turns: the first waiter that finds nobody reading reads the fd and wakes
the watches each event is for; when its turn ends it wakes every other waiter,
and one of them reads next.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from pathlib import Path

import anyio
import structlog

log = structlog.get_logger()

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_IGNORED = 0x00008000  # the watch is gone (file deleted, fs unmounted)
IN_MASK_ADD = 0x20000000  # two watches on one inode: their masks add up
# struct inotify_event: int wd; uint32 mask, cookie, len; char name[len]
_EVENT = struct.Struct("iIII")
_READ_SIZE = 64 * 1024

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def parse_events(data: bytes) -> list[tuple[int, int]]:
    """(wd, mask) of each event in a read(2) of an inotify fd (pure)."""
    events: list[tuple[int, int]] = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        events.append((wd, mask))
        offset += _EVENT.size + length
    return events


def new_instance() -> int:
    """A non-blocking inotify fd of its own (for a watcher that services it
    with a loop reader callback); OSError when none can be made."""
    fd = _load_libc().inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"inotify_init1: {os.strerror(err)}")
    return fd


def add_watch(fd: int, path: Path, mask: int) -> int:
    """inotify_add_watch(2); OSError naming the path when it fails."""
    wd = _load_libc().inotify_add_watch(fd, os.fsencode(path), mask)
    if wd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"inotify_add_watch: {os.strerror(err)}", str(path))
    return wd


def rm_watch(fd: int, wd: int) -> None:
    """inotify_rm_watch(2), errors ignored: the watch is gone already when the
    watched file was removed (EINVAL)."""
    _load_libc().inotify_rm_watch(fd, wd)


class Watch:
    """One watched path. `wait(timeout)` returns after an event on it or after
    `timeout` seconds; a polling watch (`polling`) only ever times out."""

    def __init__(self, owner: Inotify | None, path: Path, wd: int | None) -> None:
        self._owner, self.path, self.wd = owner, path, wd
        self._fired = False
        self._wake: anyio.Event | None = None

    @property
    def polling(self) -> bool:
        return self.wd is None

    async def wait(self, timeout: float) -> None:
        if self._owner is None or self.wd is None:
            await anyio.sleep(timeout)
            return
        await self._owner._wait(self, timeout)

    def close(self) -> None:
        if self._owner is not None and self.wd is not None:
            self._owner._remove(self)
        self.wd = None

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Inotify:
    """An inotify instance shared by many watches (see the module's docstring)."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self._failed = False
        self._by_wd: dict[int, set[Watch]] = {}
        self._waiting: set[Watch] = set()
        self._reading = False

    def _ensure_fd(self) -> int | None:
        if self.fd is None and not self._failed:
            fd = _load_libc().inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                # Retried at the next watch: instances may be freed meanwhile.
                err = ctypes.get_errno()
                log.warning("inotify_unavailable", error=os.strerror(err), fallback="polling")
                return None
            self.fd = fd
        return self.fd

    def watch(self, path: Path, mask: int) -> Watch:
        """Watch `path` for `mask`; a polling watch if inotify cannot have it.
        A path that does not exist raises FileNotFoundError (it cannot change)."""
        fd = self._ensure_fd()
        if fd is None:
            return Watch(None, path, None)
        wd = _load_libc().inotify_add_watch(fd, os.fsencode(path), mask | IN_MASK_ADD)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR):
                raise FileNotFoundError(err, os.strerror(err), str(path))
            log.warning("inotify_watch_unavailable", path=str(path), error=os.strerror(err), fallback="polling")
            return Watch(None, path, None)
        w = Watch(self, path, wd)
        self._by_wd.setdefault(wd, set()).add(w)
        return w

    def close(self) -> None:
        """Close the instance (its watches then poll)."""
        for watches in self._by_wd.values():
            for w in watches:
                w.wd = None
        self._by_wd.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def watch_count(self) -> int:
        return sum(len(ws) for ws in self._by_wd.values())

    def _remove(self, w: Watch) -> None:
        assert w.wd is not None
        watches = self._by_wd.get(w.wd)
        if watches is None:
            return
        watches.discard(w)
        self._waiting.discard(w)
        if not watches:
            del self._by_wd[w.wd]
            if self.fd is not None:
                _load_libc().inotify_rm_watch(self.fd, w.wd)  # EINVAL if the kernel dropped it: fine

    async def _wait(self, w: Watch, timeout: float) -> None:
        self._waiting.add(w)
        try:
            with anyio.move_on_after(timeout):
                while not w._fired and w.wd is not None:
                    if not self._reading:
                        await self._read_turn()
                    else:
                        w._wake = anyio.Event()
                        await w._wake.wait()
        finally:
            self._waiting.discard(w)
            w._fired, w._wake = False, None

    async def _read_turn(self) -> None:
        assert self.fd is not None
        self._reading = True
        try:
            await anyio.wait_readable(self.fd)
            self._dispatch()
        finally:
            self._reading = False
            # Whoever still waits gets a chance to read next (or sees it fired).
            for other in list(self._waiting):
                if other._wake is not None:
                    other._wake.set()

    def _dispatch(self) -> None:
        assert self.fd is not None
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                return
            for wd, mask in parse_events(data):
                for w in self._by_wd.get(wd, ()):
                    w._fired = True
                if mask & IN_IGNORED:
                    for w in self._by_wd.pop(wd, ()):
                        w.wd = None  # polls from now on; close() is then a no-op


_shared: Inotify | None = None


def shared() -> Inotify:
    """The process's inotify instance (made on first use)."""
    global _shared
    if _shared is None:
        _shared = Inotify()
    return _shared
