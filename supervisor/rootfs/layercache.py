"""The blobs of layer folders pushed before, so that pushing an unchanged
folder again costs a walk of its stat data instead of a tar and a gzip.

    pushes/cache/<folder key>-<fingerprint>.blob   the gzip'd tar (layertar.py)
    pushes/cache/<folder key>-<fingerprint>.json   its LayerBlob and the folder

The folder key is a hash of the folder's path; the fingerprint a hash of the
lstat of every entry under it (name, type and mode, owner, size, mtime and
ctime in ns, inode, device, links) and of the tar writer's version: any
write, chmod, chown, xattr change, rename or replacement changes a ctime or
an inode, so a changed folder never hits. One entry per folder: a new
fingerprint replaces the folder's older entries, and entries of folders that
are gone are dropped at each push, so the cache holds at most one blob per
existing folder that was pushed. A blob is only cached when the folder's
fingerprint is the same before and after it was tarred.

Entries are written by rename and read by hardlinking the blob into the
push's layout (the same filesystem, state_dir), so concurrent pushes see
a whole entry or none. Blocking (file I/O).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import structlog

from supervisor.rootfs.layertar import GZIP_LEVEL, LayerBlob, write_layer

log = structlog.get_logger()

# bump when layertar's bytes change: old entries then never hit
WRITER_VERSION = f"layertar-1-gzip{GZIP_LEVEL}"


def fingerprint(folder: Path) -> str:
    """A hash of the stat data of everything under `folder` (its own included)."""
    h = hashlib.sha256(WRITER_VERSION.encode())

    def visit(path: str, name: str) -> None:
        st = os.lstat(path)
        h.update(
            f"{name}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0{st.st_mtime_ns}\0"
            f"{st.st_ctime_ns}\0{st.st_ino}\0{st.st_dev}\0{st.st_rdev}\0{st.st_nlink}\n".encode("utf-8", "surrogateescape")
        )
        if os.path.isdir(path) and not os.path.islink(path):
            for entry in sorted(os.listdir(path)):
                visit(os.path.join(path, entry), f"{name}/{entry}")

    visit(str(folder), ".")
    return h.hexdigest()


def _folder_key(folder: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:32]


class LayerCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(self, folder: Path, blob_path: Path) -> LayerBlob:
        """`folder` as a blob at `blob_path` (a new name), from the cache when
        the folder is unchanged. OSError for a folder that cannot be read."""
        # a layer path may be a symlink to the folder: the fingerprint must
        # cover what the tar reads, not the link
        folder = Path(os.path.realpath(folder))
        before = fingerprint(folder)
        stem = self.root / f"{_folder_key(folder)}-{before}"
        cached = self._read(stem)
        if cached is not None:
            try:
                os.link(stem.with_suffix(".blob"), blob_path)
                log.info("push_layer_cached", folder=str(folder), digest=cached.digest)
                return cached
            except FileNotFoundError:
                pass  # another push replaced it just now: tar it
        blob = write_layer(folder, blob_path)
        if fingerprint(folder) == before:
            self._store(folder, stem, blob, blob_path)
        return blob

    def _read(self, stem: Path) -> LayerBlob | None:
        try:
            data = json.loads(stem.with_suffix(".json").read_text())
            return LayerBlob(data["diff_id"], data["digest"], int(data["size"]), int(data["newest_mtime"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, folder: Path, stem: Path, blob: LayerBlob, blob_path: Path) -> None:
        """Best effort: a cache that cannot be written costs time, never a push."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mktemp(prefix=".blob-", dir=self.root))
            os.link(blob_path, tmp)
            os.rename(tmp, stem.with_suffix(".blob"))
            record = {"folder": os.path.abspath(folder), "diff_id": blob.diff_id, "digest": blob.digest,
                      "size": blob.size, "newest_mtime": blob.newest_mtime}  # fmt: skip
            fd, tmp_json = tempfile.mkstemp(prefix=".json-", dir=self.root)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.rename(tmp_json, stem.with_suffix(".json"))
            for old in self.root.glob(f"{_folder_key(folder)}-*"):
                if old.stem != stem.name:
                    old.unlink(missing_ok=True)
        except OSError as err:
            log.warning("push_cache_not_written", folder=str(folder), error=str(err))

    def drop_gone(self) -> int:
        """Remove the entries of folders that no longer exist; how many."""
        dropped = 0
        if not self.root.is_dir():
            return 0
        for record in self.root.glob("*.json"):
            try:
                folder = json.loads(record.read_text())["folder"]
            except (OSError, ValueError, KeyError, TypeError):
                folder = None
            if folder is None or not os.path.isdir(folder):
                record.with_suffix(".blob").unlink(missing_ok=True)
                record.unlink(missing_ok=True)
                dropped += 1
        for leftover in self.root.glob(".*-*"):  # temp names of a push that died
            leftover.unlink(missing_ok=True)
        return dropped
