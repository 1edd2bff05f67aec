"""A layer folder as an OCI layer blob (gzip'd tar), the same bytes every time.

The inverse of `oci.unpack_layer`: overlayfs whiteouts (a 0/0 character
device `x`) become OCI whiteouts (`.wh.x`), an opaque directory (xattr
`trusted.overlay.opaque=y`) gets a `.wh..wh..opq` entry, no other
`trusted.overlay.*` xattr leaves the host.

Reproducible, so that pushing the same folder twice gives the same digests:
entries sorted by name (a directory before what it holds), numeric uid/gid
with no user or group names, the files' own mtimes in whole seconds but no
atime/ctime (whiteouts: root's, mode 0600, mtime 0), no tar or gzip header that depends on the clock or the file name
(gzip mtime 0, no FNAME). Hardlinks are kept (the first path in that order is
the file, later ones link to it). Sockets are left out, as tar does.

Blocking (file I/O): the daemon calls it through `anyio.to_thread`.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.rootfs.oci import (
    FORBIDDEN_XATTR_PREFIX,
    OVERLAY_OPAQUE_XATTR,
    PAX_XATTR_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)

# zlib's default speed/size trade-off; the level is part of the bytes, so it
# must not change between pushes (a new level means new digests, once)
GZIP_LEVEL = 6
WHITEOUT_MODE = 0o600
COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LayerBlob:
    diff_id: str  # sha256 of the tar
    digest: str  # sha256 of the gzip'd tar: the blob's name
    size: int  # bytes of the blob
    newest_mtime: int  # the newest mtime of any entry (0 for an empty layer)


class _HashingWriter(io.RawIOBase):
    """Passes writes to `inner` (or nowhere) and hashes and counts them.
    No `name` attribute: gzip would write it into its header."""

    def __init__(self, inner: Any | None) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.size += len(view)
        if self.inner is not None:
            self.inner.write(view)
        return len(view)


class _Tee(io.RawIOBase):
    """The tar stream: hashed (the diff id) on its way into gzip."""

    def __init__(self, gz: gzip.GzipFile) -> None:
        self.gz = gz
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.gz.write(view)
        return len(view)


def xattrs_of(path: str) -> dict[str, str]:
    """The pax headers for the xattrs a layer may carry (sorted; overlay's own left out)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}  # a filesystem without xattrs (or a link that cannot have them)
    headers: dict[str, str] = {}
    for name in sorted(names):
        if name.startswith(FORBIDDEN_XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        headers[PAX_XATTR_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return headers


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


def _marker(name: str) -> tarfile.TarInfo:
    """An OCI whiteout entry. Fixed metadata: the importer makes a whiteout
    device with no times of its own (a store's copy has the import's time),
    and the tar must not depend on which copy was read."""
    info = tarfile.TarInfo(name)
    info.mode = WHITEOUT_MODE
    info.uname = info.gname = ""
    info.mtime = 0
    return info


class _LayerTar:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.links: dict[tuple[int, int], str] = {}
        self.newest = 0

    def add_dir(self, directory: str, prefix: str) -> None:
        for entry in sorted(os.listdir(directory)):
            self.add(os.path.join(directory, entry), prefix + entry)

    def add(self, path: str, name: str) -> None:
        st = os.lstat(path)
        mode = st.st_mode
        if stat.S_ISCHR(mode) and st.st_rdev == 0:  # an overlayfs whiteout
            head, _, base = name.rpartition("/")
            self.tar.addfile(_marker(f"{head}/{WHITEOUT_PREFIX}{base}" if head else WHITEOUT_PREFIX + base))
            return
        self.newest = max(self.newest, int(st.st_mtime))
        if stat.S_ISDIR(mode):
            info = _info(name, st, tarfile.DIRTYPE)
            info.pax_headers = xattrs_of(path)
            self.tar.addfile(info)
            if _is_opaque(path):
                self.tar.addfile(_marker(f"{name}/{WHITEOUT_OPAQUE}"))
            self.add_dir(path, name + "/")
            return
        if stat.S_ISSOCK(mode):
            return
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info = _info(name, st, tarfile.LNKTYPE)
                info.linkname = self.links[key]
                self.tar.addfile(info)
                return
            self.links[key] = name
            info = _info(name, st, tarfile.REGTYPE)
            info.size = st.st_size
            info.pax_headers = xattrs_of(path)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                self.tar.addfile(info, f)
            return
        if stat.S_ISLNK(mode):
            info = _info(name, st, tarfile.SYMTYPE)
            info.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = _info(name, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info = _info(name, st, tarfile.FIFOTYPE)
        else:
            return
        info.pax_headers = xattrs_of(path)
        self.tar.addfile(info)


def write_layer(folder: Path, blob: Path) -> LayerBlob:
    """Tar and gzip `folder` into the file `blob`; its digests and size.
    OSError for a folder that cannot be read (the caller names the layer)."""
    if not stat.S_ISDIR(os.stat(folder).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    with open(blob, "wb") as out:
        compressed = _HashingWriter(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            tee = _Tee(gz)
            with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                layer = _LayerTar(tar)
                layer.add_dir(str(folder), "")
    return LayerBlob(
        diff_id="sha256:" + tee.hash.hexdigest(),
        digest="sha256:" + compressed.hash.hexdigest(),
        size=compressed.size,
        newest_mtime=layer.newest,
    )
