"""OCI image layouts: index → manifest → config + layers, and layer unpacking.

Parsing (`parse_*`, `select_*`) is pure and works on already-decoded JSON.
`OciLayout` reads a layout directory and verifies every blob it reads against
the digest and size its descriptor promises, while it reads (a corrupt or
truncated blob is an `ImageError` naming the blob). `unpack_layer` extracts one
layer tar into a directory that stands alone: OCI whiteouts become overlayfs
whiteouts (`.wh.x` → a 0/0 character device `x`; `.wh..wh..opq` → the
`trusted.overlay.opaque=y` xattr on the directory), so stacking the layer
directories as overlay lowerdirs gives the image's filesystem.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog
import zstandard

from supervisor.rootfs.errors import ImageError

log = structlog.get_logger()

OCI_LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})

MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
# compression by layer media type; the "nondistributable" variants are the same bytes
LAYER_COMPRESSION: Mapping[str, str] = {
    MEDIA_LAYER_TAR: "none",
    MEDIA_LAYER_GZIP: "gzip",
    MEDIA_LAYER_ZSTD: "zstd",
    MEDIA_DOCKER_LAYER_TAR: "none",
    MEDIA_DOCKER_LAYER_GZIP: "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
}

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
# xattrs a layer tar may not set: they would steer overlayfs (redirects, metacopy...)
FORBIDDEN_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR_PREFIX = "SCHILY.xattr."

# index.json, manifests and configs are small; a bigger one is not an image
MAX_JSON_BLOB = 4 * 1024 * 1024
DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
COPY_CHUNK = 1024 * 1024

# platform.machine() → GOARCH, the names OCI platforms use
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_arch() -> str:
    machine = platform.machine()
    return GOARCH.get(machine, machine)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    platform: tuple[str, str] | None = None  # (os, architecture)

    @property
    def ref_name(self) -> str | None:
        return dict(self.annotations).get(REF_NAME_ANNOTATION)


@dataclass(frozen=True)
class Healthcheck:
    """Docker's Healthcheck as the image config has it (durations in ns, 0: default)."""

    test: tuple[str, ...] = ()  # ("CMD", argv...), ("CMD-SHELL", line), ("NONE",) or () (inherit)
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "Test": list(self.test),
            "Interval": self.interval_ns,
            "Timeout": self.timeout_ns,
            "StartPeriod": self.start_period_ns,
            "Retries": self.retries,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Healthcheck:
        return cls(
            test=_strings(data.get("Test"), "Healthcheck.Test"),
            interval_ns=_count(data.get("Interval"), "Healthcheck.Interval"),
            timeout_ns=_count(data.get("Timeout"), "Healthcheck.Timeout"),
            start_period_ns=_count(data.get("StartPeriod"), "Healthcheck.StartPeriod"),
            retries=_count(data.get("Retries"), "Healthcheck.Retries"),
        )


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings, got {value!r:.80}")
    return tuple(value)


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {value!r:.80}")
    return value


def _count(value: Any, key: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}: expected a count of 0 or more, got {value!r:.80}")
    return value


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's config a unit uses as defaults (units/imageconfig.py)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "Env": list(self.env),
            "Cmd": list(self.cmd),
            "Entrypoint": list(self.entrypoint),
            "WorkingDir": self.working_dir,
            "User": self.user,
            "StopSignal": self.stop_signal,
        }
        if self.healthcheck is not None:
            data["Healthcheck"] = self.healthcheck.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageConfig:
        """ValueError naming the key when a value has the wrong type."""
        health = data.get("Healthcheck")
        if health is not None and not isinstance(health, Mapping):
            raise ValueError(f"Healthcheck: expected an object, got {health!r:.80}")
        return cls(
            env=_strings(data.get("Env"), "Env"),
            cmd=_strings(data.get("Cmd"), "Cmd"),
            entrypoint=_strings(data.get("Entrypoint"), "Entrypoint"),
            working_dir=_text(data.get("WorkingDir"), "WorkingDir"),
            user=_text(data.get("User"), "User"),
            stop_signal=_text(data.get("StopSignal"), "StopSignal"),
            healthcheck=Healthcheck.from_json(health) if health is not None else None,
        )


@dataclass(frozen=True)
class Manifest:
    digest: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ResolvedImage:
    """A tag resolved in a layout: its manifest and what its config says."""

    tag: str
    manifest: Manifest
    config: ImageConfig
    diff_ids: tuple[str, ...]  # uncompressed layer digests, lowest first
    created: str | None
    layer_ids: tuple[str, ...]  # store key per layer (diff id, else blob digest), lowest first

    @property
    def size(self) -> int:
        return self.manifest.config.size + sum(d.size for d in self.manifest.layers)


# --- pure parsing ---------------------------------------------------------------


def _require(cond: bool, file: str, message: str, digest: str | None = None) -> None:
    if not cond:
        raise ImageError(file, message, digest)


def parse_descriptor(data: Any, file: str, where: str) -> Descriptor:
    _require(isinstance(data, Mapping), file, f"{where}: expected a descriptor object, got {data!r:.80}")
    media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
    _require(isinstance(media_type, str), file, f"{where}.mediaType: expected a string, got {media_type!r:.80}")
    _require(
        isinstance(digest, str) and DIGEST_RE.match(digest) is not None,
        file,
        f'{where}.digest: expected "sha256:<64 hex>", got {digest!r:.80}',
    )
    _require(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0,
        file,
        f"{where}.size: expected a byte count, got {size!r:.80}",
    )
    annotations = data.get("annotations") or {}
    _require(isinstance(annotations, Mapping), file, f"{where}.annotations: expected an object")
    plat = data.get("platform")
    platform_pair = (str(plat.get("os", "")), str(plat.get("architecture", ""))) if isinstance(plat, Mapping) else None
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=tuple(sorted((str(k), str(v)) for k, v in annotations.items())),
        platform=platform_pair,
    )


def parse_index(data: Any, file: str) -> tuple[Descriptor, ...]:
    _require(isinstance(data, Mapping), file, "expected a JSON object (an OCI image index)")
    manifests = data.get("manifests")
    _require(isinstance(manifests, list), file, '"manifests": expected a list of descriptors')
    return tuple(parse_descriptor(m, file, f"manifests[{i}]") for i, m in enumerate(manifests))


def select_by_tag(descriptors: Sequence[Descriptor], tag: str, file: str) -> Descriptor:
    for desc in descriptors:
        if desc.ref_name == tag:
            return desc
    available = sorted({d.ref_name for d in descriptors if d.ref_name})
    listed = ", ".join(available) if available else "none"
    raise ImageError(file, f'tag "{tag}" not found; available tags: {listed}')


def select_platform(descriptors: Sequence[Descriptor], arch: str, file: str, digest: str) -> Descriptor:
    """In an image index, the manifest for linux/<arch> (or the only one)."""
    manifests = [d for d in descriptors if d.media_type in MANIFEST_MEDIA_TYPES or d.media_type in INDEX_MEDIA_TYPES]
    for desc in manifests:
        if desc.platform == ("linux", arch):
            return desc
    if len(manifests) == 1 and manifests[0].platform is None:
        return manifests[0]
    offered = ", ".join(f"{d.platform[0]}/{d.platform[1]}" for d in manifests if d.platform) or "none"
    raise ImageError(file, f"image index has no manifest for linux/{arch}; platforms: {offered}", digest)


def parse_manifest(data: Any, digest: str, file: str) -> Manifest:
    _require(isinstance(data, Mapping), file, "expected a JSON object (an image manifest)", digest)
    config = parse_descriptor(data.get("config"), file, "config")
    layers = data.get("layers")
    _require(isinstance(layers, list), file, '"layers": expected a list of descriptors', digest)
    parsed = tuple(parse_descriptor(layer, file, f"layers[{i}]") for i, layer in enumerate(layers))
    for i, layer in enumerate(parsed):
        _require(
            layer.media_type in LAYER_COMPRESSION,
            file,
            f"layers[{i}].mediaType: expected one of {sorted(LAYER_COMPRESSION)}, got {layer.media_type!r}",
            digest,
        )
    return Manifest(digest=digest, config=config, layers=parsed)


def parse_config(data: Any, file: str, digest: str) -> tuple[ImageConfig, tuple[str, ...], str | None]:
    _require(isinstance(data, Mapping), file, "expected a JSON object (an image config)", digest)
    runtime = data.get("config") or {}
    _require(isinstance(runtime, Mapping), file, '"config": expected an object', digest)
    rootfs = data.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") or [] if isinstance(rootfs, Mapping) else []
    _require(
        isinstance(diff_ids, list) and all(isinstance(d, str) and DIGEST_RE.match(d) for d in diff_ids),
        file,
        '"rootfs.diff_ids": expected a list of "sha256:<64 hex>"',
        digest,
    )
    created = data.get("created")
    try:
        config = ImageConfig.from_json(runtime)
    except ValueError as err:
        raise ImageError(file, f"config.{err}", digest) from None
    return config, tuple(diff_ids), created if isinstance(created, str) else None


def layer_ids_for(manifest: Manifest, diff_ids: Sequence[str]) -> tuple[str, ...]:
    """Store key per layer: the diff id (the uncompressed content, so the same
    layer compressed two ways is stored once) when the config lists one per
    layer, else the blob digest."""
    if len(diff_ids) == len(manifest.layers):
        return tuple(diff_ids)
    return tuple(d.digest for d in manifest.layers)


# --- verified reading -------------------------------------------------------------


def open_regular(path: Path) -> IO[bytes]:
    """Open a file of an image layout for reading, refusing anything that is
    not a regular file: a FIFO (or a device) in a layout would block the
    reading thread forever, and a directory reads as an error far from here.
    The open itself never blocks (O_NONBLOCK, dropped again for reading)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageError(path, f"is {_kind_of(mode)}, not a regular file; expected a file of an OCI image layout")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def _read_regular(path: Path) -> bytes:
    with open_regular(path) as f:
        return f.read()


def _new_hash(digest: str) -> Any:
    return hashlib.new(digest.split(":", 1)[0])


class VerifiedReader(io.RawIOBase):
    """Reads a blob and checks, as bytes go by, that it is exactly `size`
    bytes with the promised digest. The check fires at EOF (or `finish()`)."""

    def __init__(self, path: Path, digest: str, size: int) -> None:
        super().__init__()
        self.path, self.digest, self.size = path, digest, size
        self._file = open_regular(path)  # closed in close()
        self._hash = _new_hash(digest)
        self._count = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        if n:
            self._count += n
            self._hash.update(memoryview(buffer)[:n])
            if self._count > self.size:
                raise ImageError(self.path, f"blob is longer than the {self.size} bytes its descriptor says", self.digest)
        else:
            self._verify()
        return n or 0

    def _verify(self) -> None:
        if self._verified:
            return
        if self._count < self.size:
            raise ImageError(self.path, f"blob is truncated: {self._count} of {self.size} bytes", self.digest)
        actual = f"{self.digest.split(':', 1)[0]}:{self._hash.hexdigest()}"
        if actual != self.digest:
            raise ImageError(self.path, f"blob is corrupt: its content has digest {actual}", self.digest)
        self._verified = True

    def finish(self) -> None:
        """Read whatever the consumer left and verify the whole blob."""
        while self.read(COPY_CHUNK):
            pass
        self._verify()

    def close(self) -> None:
        self._file.close()
        super().close()


class HashingReader(io.RawIOBase):
    """Passes a stream through, hashing it (the diff id of a decompressed layer)."""

    def __init__(self, inner: IO[bytes], algorithm: str) -> None:
        super().__init__()
        self._inner = inner
        self._hash = hashlib.new(algorithm)
        self.algorithm = algorithm

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._hash.update(data)
        return n

    def drain(self) -> str:
        while self.read(COPY_CHUNK):
            pass
        return f"{self.algorithm}:{self._hash.hexdigest()}"


class OciLayout:
    """An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        marker = self.path / OCI_LAYOUT_FILE
        try:
            layout = json.loads(_read_regular(marker))
        except FileNotFoundError:
            raise ImageError(marker, "not an OCI image layout: the oci-layout file is missing") from None
        except (OSError, ValueError) as err:
            raise ImageError(marker, f"cannot read: {err}") from None
        if not isinstance(layout, Mapping) or not isinstance(layout.get("imageLayoutVersion"), str):
            raise ImageError(marker, 'expected {"imageLayoutVersion": "1.0.0"}')

    def blob_path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise ImageError(self.path / BLOBS_DIR, f'expected a digest "sha256:<64 hex>", got {digest!r:.80}')
        algorithm, hexdigest = digest.split(":", 1)
        return self.path / BLOBS_DIR / algorithm / hexdigest

    def open_blob(self, desc: Descriptor) -> VerifiedReader:
        path = self.blob_path(desc.digest)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise ImageError(path, "blob is missing", desc.digest) from None
        if actual < desc.size:
            raise ImageError(path, f"blob is truncated: {actual} of {desc.size} bytes", desc.digest)
        if actual > desc.size:
            raise ImageError(path, f"blob is {actual} bytes, its descriptor says {desc.size}", desc.digest)
        return VerifiedReader(path, desc.digest, desc.size)

    def read_json_blob(self, desc: Descriptor) -> Any:
        if desc.size > MAX_JSON_BLOB:
            raise ImageError(self.blob_path(desc.digest), f"{desc.size} bytes is too big for JSON metadata", desc.digest)
        with self.open_blob(desc) as reader:
            data = reader.read()
            reader.finish()
        try:
            return json.loads(data)
        except ValueError as err:
            raise ImageError(reader.path, f"expected JSON: {err}", desc.digest) from None

    def index(self) -> tuple[Descriptor, ...]:
        file = self.path / INDEX_FILE
        try:
            raw = _read_regular(file)
        except OSError as err:
            raise ImageError(file, f"cannot read the image index: {err.strerror}") from None
        try:
            data = json.loads(raw)
        except ValueError as err:
            raise ImageError(file, f"expected JSON: {err}") from None
        return parse_index(data, str(file))

    def tags(self) -> list[str]:
        return sorted({d.ref_name for d in self.index() if d.ref_name})

    def manifest_descriptor(self, tag: str, arch: str | None = None) -> Descriptor:
        """The manifest a tag names, going through nested image indexes."""
        desc = select_by_tag(self.index(), tag, str(self.path / INDEX_FILE))
        for _depth in range(4):
            if desc.media_type in MANIFEST_MEDIA_TYPES:
                return desc
            if desc.media_type not in INDEX_MEDIA_TYPES:
                raise ImageError(
                    self.blob_path(desc.digest),
                    f"expected an image manifest or index, got media type {desc.media_type!r}",
                    desc.digest,
                )
            nested = parse_index(self.read_json_blob(desc), str(self.blob_path(desc.digest)))
            desc = select_platform(nested, arch or host_arch(), str(self.blob_path(desc.digest)), desc.digest)
        raise ImageError(self.path / INDEX_FILE, f'tag "{tag}": image indexes nested too deep')

    def resolve(self, tag: str, arch: str | None = None) -> ResolvedImage:
        mdesc = self.manifest_descriptor(tag, arch)
        manifest = parse_manifest(self.read_json_blob(mdesc), mdesc.digest, str(self.blob_path(mdesc.digest)))
        config, diff_ids, created = parse_config(
            self.read_json_blob(manifest.config), str(self.blob_path(manifest.config.digest)), manifest.config.digest
        )
        return ResolvedImage(
            tag=tag,
            manifest=manifest,
            config=config,
            diff_ids=diff_ids,
            created=created,
            layer_ids=layer_ids_for(manifest, diff_ids),
        )


# --- layer unpacking ---------------------------------------------------------------


def _decompressor(reader: VerifiedReader, media_type: str) -> IO[bytes]:
    compression = LAYER_COMPRESSION[media_type]
    if compression == "gzip":
        return gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        # a layer may be several zstd frames (zstd:chunked writes one per file);
        # buffered: tarfile reads 10 KiB at a time, each a call into the C reader
        zstd = zstandard.ZstdDecompressor().stream_reader(reader, read_across_frames=True, closefd=False)
        return io.BufferedReader(zstd, COPY_CHUNK)  # type: ignore[arg-type]
    return io.BufferedReader(reader, COPY_CHUNK)


def unpack_layer(layout: OciLayout, desc: Descriptor, diff_id: str | None, dest: Path) -> None:
    """Unpack one layer blob into the (existing, empty) directory `dest`,
    verifying the blob's digest and, when given, the uncompressed diff id.
    On error `dest` is left half-filled: the caller unpacks into a temp dir."""
    if desc.media_type not in LAYER_COMPRESSION:
        raise ImageError(layout.blob_path(desc.digest), f"unsupported layer media type {desc.media_type!r}", desc.digest)
    with layout.open_blob(desc) as raw:
        try:
            stream = HashingReader(_decompressor(raw, desc.media_type), (diff_id or "sha256:").split(":", 1)[0])
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                LayerWriter(dest, raw.path, desc.digest).write_all(tar)
            uncompressed = stream.drain()
        except ImageError:
            raise
        except (OSError, EOFError, zlib.error, zstandard.ZstdError, tarfile.TarError, ValueError) as err:
            # a damaged blob usually breaks decompression first: name the real cause
            raw.finish()
            raise ImageError(raw.path, f"not a valid layer ({desc.media_type}): {err}", desc.digest) from None
        raw.finish()
    if diff_id is not None and uncompressed != diff_id:
        raise ImageError(
            raw.path, f"uncompressed layer has digest {uncompressed}, the image config says {diff_id}", desc.digest
        )


def clean_member_name(name: str) -> tuple[str, ...]:
    """A tar member name as path components inside the layer; refuses
    absolute names and `..` (pure)."""
    if name.startswith("/"):
        raise ValueError(f"absolute path {name!r}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError(f"path with '..' {name!r}")
    if any("\0" in p for p in parts):
        raise ValueError(f"path with NUL {name!r}")
    return parts


class LayerWriter:
    """Writes tar members under `root` without ever following a symlink, keeping
    ownership, modes, mtimes, device nodes, hardlinks and xattrs (we are root;
    this is the image's filesystem, not a download to open)."""

    def __init__(self, root: Path, blob: Path, digest: str) -> None:
        self.root = root
        self.blob = blob
        self.digest = digest
        self._dir_times: list[tuple[Path, float]] = []

    def _error(self, member: tarfile.TarInfo, message: str) -> ImageError:
        return ImageError(self.blob, f"layer entry {member.name!r}: {message}", self.digest)

    def write_all(self, tar: tarfile.TarFile) -> None:
        for member in tar:
            self.write(tar, member)
        # directory mtimes last: creating their children changed them
        for path, mtime in reversed(self._dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    def _directory(self, member: tarfile.TarInfo, dir_parts: tuple[str, ...], create: bool) -> Path:
        """The real directory `dir_parts` under the root, refusing to go through
        a symlink or a non-directory (that is how a layer escapes its root)."""
        path = self.root
        for part in dir_parts:
            path = path / part
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise self._error(member, f"{path.relative_to(self.root)} does not exist in this layer") from None
                os.mkdir(path, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise self._error(member, f"goes through the symlink {path.relative_to(self.root)}")
            if not stat.S_ISDIR(st.st_mode):
                raise self._error(member, f"{path.relative_to(self.root)} is not a directory")
        return path

    def _clear(self, path: Path, keep_dir: bool) -> None:
        """Make room for a new entry (later tar entries replace earlier ones)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                shutil.rmtree(path)
        else:
            os.unlink(path)

    def write(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        try:
            parts = clean_member_name(member.name)
        except ValueError as err:
            raise self._error(member, f"refused: {err}") from None
        if not parts:  # the layer root itself
            self._set_metadata(self.root, member)
            return
        name = parts[-1]
        if name == WHITEOUT_OPAQUE:
            opaque_dir = self._directory(member, parts[:-1], create=True)
            os.setxattr(opaque_dir, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        if name.startswith(WHITEOUT_META_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk, ...): meaningless to overlay
        parent = self._directory(member, parts[:-1], create=True)
        if name.startswith(WHITEOUT_PREFIX):
            hidden = parent / name[len(WHITEOUT_PREFIX) :]
            self._clear(hidden, keep_dir=False)
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            return
        path = parent / name
        self._clear(path, keep_dir=member.isdir())
        if member.isdir():
            if not path.is_dir():
                os.mkdir(path, 0o700)
        elif member.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                source = tar.extractfile(member)
                assert source is not None  # a regular member always has data
                shutil.copyfileobj(source, out, COPY_CHUNK)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            try:
                target_parts = clean_member_name(member.linkname)
            except ValueError as err:
                raise self._error(member, f"hardlink refused: {err}") from None
            if not target_parts:
                raise self._error(member, "hardlink to the layer root")
            target = self._directory(member, target_parts[:-1], create=False) / target_parts[-1]
            try:
                os.link(target, path, follow_symlinks=False)
            except FileNotFoundError:
                raise self._error(member, f"hardlink target {member.linkname!r} is not in this layer") from None
            return  # the link shares the target's inode and metadata
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            log.warning("layer_entry_skipped", blob=str(self.blob), entry=member.name, type=member.type)
            return
        self._set_metadata(path, member)

    def _set_metadata(self, path: Path, member: tarfile.TarInfo) -> None:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        self._set_xattrs(path, member)
        if not member.issym():
            # after chown, which clears set-id bits
            os.chmod(path, member.mode & 0o7777)
        if member.isdir():
            self._dir_times.append((path, float(member.mtime)))
        else:
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def _set_xattrs(self, path: Path, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            name = key[len(PAX_XATTR_PREFIX) :]
            if name.startswith(FORBIDDEN_XATTR_PREFIX):
                log.warning("layer_xattr_refused", blob=str(self.blob), entry=member.name, xattr=name)
                continue
            try:
                os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                    raise
                log.warning("layer_xattr_skipped", blob=str(self.blob), entry=member.name, xattr=name, error=err.strerror)
