"""Pulling an image: skopeo copies a source (a registry, an archive, a `dir:`)
into a scratch OCI layout under state_dir/pulls, the store imports it from
there, and the scratch copy is removed whatever happens.

skopeo is the transport (auth files, registries.conf, TLS, retries); supd
never speaks the registry protocol itself. skopeo runs as a child of the
daemon: it is started on the event loop and `track()`ed by the Reaper before
any await (the Reaper reaps every untracked child on SIGCHLD), then waited for
through the Reaper's pidfd wait. Nothing runs in Python between its fork and
exec (subprocess uses vfork/posix_spawn in C).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from supervisor.rootfs.errors import ImageError
from supervisor.rootfs.oci import OciLayout
from supervisor.rootfs.reference import Reference, parse_reference
from supervisor.rootfs.source import is_layout, registry_reference
from supervisor.rootfs.store import Image, LayerStore
from supervisor.runtime.reaper import Reaper

log = structlog.get_logger()

SKOPEO = "skopeo"
PULLS_DIR = "pulls"
SCRATCH_TAG = "pulled"  # the tag in the scratch layout when the source has none
# Go's names for this machine, what a manifest list's platform entries use
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_SKOPEO_MSG = re.compile(r'level=(?:fatal|error) msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class PullSettings:
    insecure_registries: tuple[str, ...] = ()  # "host[:port]" reached without TLS (besides loopback)
    auth_file: Path | None = None  # containers-auth.json; used when it exists
    certs_dir: Path | None = None  # <certs_dir>/<host:port>/ca.crt, the containers layout


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", GOARCH.get(machine, machine)


def skopeo_copy_argv(source: str, scratch: Path, settings: PullSettings, authfile: Path | None) -> list[str]:
    """The skopeo command that copies `source` (a canonical source string,
    source.py) into the OCI layout `scratch` (pure)."""
    os_name, arch = host_platform()
    argv = [SKOPEO, "--override-os", os_name, "--override-arch", arch, "copy", "--quiet"]
    argv += _source_options(source, settings, authfile)
    argv += [_skopeo_source(source), f"oci:{scratch}:{scratch_tag(source)}"]
    return argv


def scratch_tag(source: str) -> str:
    """The tag the image gets in the scratch layout, and so in its record:
    the reference's own tag when it has one."""
    reference = registry_reference(source)
    tag = parse_reference(reference).tag if reference else None
    return tag or SCRATCH_TAG


def skopeo_inspect_raw_argv(source: str, settings: PullSettings, authfile: Path | None) -> list[str]:
    return [SKOPEO, "inspect", "--raw", *_source_options(source, settings, authfile, prefix="--"), _skopeo_source(source)]


def _skopeo_source(source: str) -> str:
    reference = registry_reference(source)
    return source if reference is None else "docker://" + parse_reference(reference).pull_form


def _source_options(source: str, settings: PullSettings, authfile: Path | None, prefix: str = "--src-") -> list[str]:
    reference = registry_reference(source)
    if reference is None:
        return []
    return registry_options(parse_reference(reference), settings, authfile, prefix)


def registry_options(ref: Reference, settings: PullSettings, authfile: Path | None, prefix: str) -> list[str]:
    """skopeo's TLS and auth options for a registry (`prefix`: "--src-",
    "--dest-" or "--"), by supd's rules (pure)."""
    options: list[str] = []
    # listed: never verified; a CA folder for it: verified against that CA,
    # even on loopback (the admin asked for it); else loopback is not verified
    certs = settings.certs_dir / ref.registry if settings.certs_dir is not None else None
    if ref.registry in settings.insecure_registries or ref.host in settings.insecure_registries:
        options.append(f"{prefix}tls-verify=false")
    elif certs is not None and certs.is_dir():
        options.append(f"{prefix}cert-dir={certs}")
    elif ref.is_local():
        options.append(f"{prefix}tls-verify=false")
    auth = authfile if authfile is not None else settings.auth_file
    if auth is not None and (authfile is not None or auth.is_file()):
        options.append(f"{prefix}authfile={auth}")
    return options


def skopeo_error(output: str) -> str:
    """skopeo's own message out of its log lines (the last fatal one)."""
    found = _SKOPEO_MSG.findall(output)
    if found:
        return found[-1].replace('\\"', '"')
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "skopeo failed without a message"


async def run_skopeo(
    reaper: Reaper, what: str, argv: Sequence[str], log_path: Path, stdout_path: Path | None = None
) -> None:
    """Run skopeo to its end (killed if the caller is cancelled); its stderr
    (and stdout unless `stdout_path`) go to `log_path`. ImageError naming
    `what` with skopeo's own message when it fails."""
    with open(log_path, "wb") as err, open(stdout_path or os.devnull, "wb") as data:
        # started on the loop and tracked before any await: the Reaper
        # must not reap it first (see the module doc)
        try:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=data if stdout_path else err, stderr=err
            )
        except OSError as err:
            raise ImageError(what, f"cannot run {argv[0]}: {err.strerror}") from None
        reaper.track(process.pid)
    try:
        async with reaper.killed_on_error(process.pid):
            status = await reaper.wait(process.pid)
    finally:
        process.returncode = -1  # reaped by the Reaper: Popen must not wait
    if status.code != 0:
        output = await anyio.to_thread.run_sync(lambda: log_path.read_text(errors="replace"))
        raise ImageError(what, skopeo_error(output))


class Puller:
    def __init__(
        self, state_dir: Path, store: LayerStore, reaper: Reaper, settings: PullSettings, limiter: anyio.CapacityLimiter
    ) -> None:
        self.scratch_root = Path(state_dir) / PULLS_DIR
        self.store = store
        self.reaper = reaper
        self.settings = settings
        self.limiter = limiter
        self._locks: dict[str, anyio.Lock] = {}

    async def pull(self, source: str, authfile: Path | None = None) -> Image:
        """Copy `source` with skopeo and import it; one pull per source at a
        time (a second waiter gets the same image). Raises ImageError naming
        the source and skopeo's cause."""
        if is_layout(source):
            raise ImageError(source, "an OCI layout is imported, not pulled")
        lock = self._locks.setdefault(source, anyio.Lock())
        async with lock:
            return await self._pull(source, authfile)

    async def ensure(self, source: str, policy: str) -> None:
        """Make `source` available per a unit's `[rootfs].pull` policy."""
        if is_layout(source):
            return  # imported on first use by the store itself
        if policy == "always":
            await self.pull(source)
            return
        if await anyio.to_thread.run_sync(self.store.find_complete, source, limiter=self.limiter) is not None:
            return
        if policy == "never":
            raise ImageError(source, 'not in the store, and [rootfs].pull = "never" (pull it with supctl image pull)')
        await self.pull(source)

    async def _pull(self, source: str, authfile: Path | None) -> Image:
        await anyio.to_thread.run_sync(lambda: self.scratch_root.mkdir(parents=True, exist_ok=True))
        scratch = Path(tempfile.mkdtemp(prefix="pull-", dir=self.scratch_root))
        try:
            log.info("image_pull_started", source=source)
            layout = scratch / "layout"
            await self._skopeo(source, skopeo_copy_argv(source, layout, self.settings, authfile), scratch / "copy.log")
            landed = await anyio.to_thread.run_sync(self._landed_digest, layout, source)
            await self._check_pinned(source, landed, scratch, authfile)
            image = await anyio.to_thread.run_sync(self._import, layout, source, limiter=self.limiter)
            log.info("image_pulled", source=source, digest=image.digest)
            return image
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)

    @staticmethod
    def _landed_digest(layout: Path, source: str) -> str:
        try:
            return OciLayout(layout).manifest_descriptor(scratch_tag(source)).digest
        except ImageError as err:
            raise ImageError(source, f"skopeo's copy: {err.message}") from None

    def _import(self, layout: Path, source: str) -> Image:
        try:
            return self.store.import_image(layout, scratch_tag(source), name=source)
        except ImageError as err:
            raise ImageError(source, f"import: {err.message}", err.digest) from None
        except OSError as err:
            raise ImageError(source, f"import: {err.strerror or err}") from None

    async def _skopeo(self, source: str, argv: Sequence[str], log_path: Path, stdout_path: Path | None = None) -> None:
        await run_skopeo(self.reaper, source, argv, log_path, stdout_path)

    async def _check_pinned(self, source: str, landed: str, scratch: Path, authfile: Path | None) -> None:
        """A digest-pinned reference must have landed as that manifest, or as
        the entry for this platform of that (digest-checked) manifest list."""
        reference = registry_reference(source)
        pinned = parse_reference(reference).digest if reference else None
        if pinned is None or pinned == landed:
            return
        raw_path = scratch / "pinned.json"
        argv = skopeo_inspect_raw_argv(source, self.settings, authfile)
        await self._skopeo(source, argv, scratch / "inspect.log", stdout_path=raw_path)
        raw = await anyio.to_thread.run_sync(raw_path.read_bytes)
        algorithm, _, expected = pinned.partition(":")
        listed: set[str | None] = set()
        if hashlib.new(algorithm, raw).hexdigest() == expected:
            try:
                listed = {m.get("digest") for m in json.loads(raw).get("manifests", ())}
            except (ValueError, AttributeError):
                listed = set()
        if landed not in listed:
            raise ImageError(source, f"digest mismatch: pinned {pinned}, got manifest {landed}")
