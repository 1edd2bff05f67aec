"""The daemon's side of the control API (`api.commands.Controller`)."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import struct
import termios
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream

from supervisor.api import logtail
from supervisor.api.commands import BadRequestError, ConflictError, NoSuchUnitError, NotFoundError
from supervisor.cgroups.driver import CgroupError
from supervisor.daemon import logs as unit_logs
from supervisor.daemon import status as unit_status
from supervisor.daemon.spawnspec import build_exec_spec
from supervisor.seccomp.unitfilter import SeccompError
from supervisor.seccomp.unitfilter import filter_for as seccomp_filter_for
from supervisor.daemon.supervisor import Refused, StartFailure, Supervisor
from supervisor.daemon.unitrun import UnitRun
from supervisor.rootfs import usage as image_usage
from supervisor.rootfs.errors import ImageError
from supervisor.rootfs.pull import Puller
from supervisor.rootfs.push import PushSource, Pusher, source_of_image, source_of_unit
from supervisor.rootfs.reference import ReferenceError
from supervisor.rootfs.source import SourceError, image_source, is_layout
from supervisor.rootfs.store import Image, LayerStore, Removal
from supervisor.policy import state as states
from supervisor.runtime.spawn import SpawnError




class ExecSession:
    """A command running inside a unit, waited on through the reaper; with
    exec -t, the master of its pty (held for resizes until `close`)."""

    def __init__(self, pid: int, wait: Callable[[], Awaitable[Any]], tty: int | None = None) -> None:
        self.pid = pid
        self._wait = wait
        self._tty = tty

    @property
    def tty(self) -> int | None:
        return self._tty

    def resize(self, rows: int, cols: int) -> None:
        if self._tty is not None:
            set_window_size(self._tty, rows, cols)

    def close(self) -> None:
        if self._tty is not None:
            os.close(self._tty)
            self._tty = None

    async def wait(self) -> int:
        status = await self._wait()
        if status.signal is not None:
            return 128 + int(status.signal)
        return int(status.code or 0)

    def kill(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self, sig: int) -> None:
        """Signal the session's whole process group: the relay the spawner
        made a session leader and the command it runs inside the unit, with
        whatever they started (a command that ignores SIGHUP must not outlive
        its client, reparented to supd). ProcessLookupError once it is empty."""
        os.killpg(self.pid, sig)


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ on a pty master: the kernel tells the terminal's foreground
    process group (SIGWINCH) when the size changes."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class DaemonController:
    def __init__(self, sup: Supervisor, reload: Callable[[], Awaitable[dict[str, Any]]], info: Callable[[], dict[str, Any]], images: LayerStore | None = None, puller: Puller | None = None, pusher: Pusher | None = None) -> None:
        self.sup = sup
        self._puller = puller
        self._pusher = pusher
        self._reload = reload
        self._info = info
        self._images = images
        # Image imports share the supervisor's few image threads with unit
        # starts that import an image: a slow (or stuck) import waits for
        # those, never for the threads other starts, scans and logs use.
        self._import_threads = sup.image_threads

    def _unit(self, name: str) -> UnitRun:
        u = self.sup.units.get(name)
        if u is None:
            raise NoSuchUnitError(name)
        return u

    def info(self) -> dict[str, Any]:
        return self._info()

    def list_units(self) -> list[dict[str, Any]]:
        return [unit_status.unit_status(u, self.sup.driver, detail=False) for _n, u in sorted(self.sup.units.items())]

    def unit_status(self, name: str) -> dict[str, Any]:
        status = unit_status.unit_status(self._unit(name), self.sup.driver)
        ids = self.sup.userns_of(name)
        if ids is not None:  # [rootfs].userns = "auto": the host ids its container ids 0.. are
            status["userns"] = ids.to_json()
        return status

    async def command(self, name: str, verb: str) -> dict[str, Any]:
        """A verb goes to the unit's task (the only writer of its state) and
        is answered once applied; start, stop and restart also wait until the
        unit has settled, so `supctl start` says running (or why not)."""
        u = self._unit(name)
        if u.unit is None and verb in ("start", "restart"):
            raise ConflictError(f"{name} has an invalid unit file: {u.error}")
        try:
            if verb == "start":
                if not u.active:
                    await self.sup.start(u)
                    await self._settle(u)
            elif verb == "stop":
                await self.sup.stop(u)
                await self._settle(u)
            elif verb == "restart":
                await self.sup.restart(u)
                await self._settle(u)
            elif verb == "freeze":
                await self.sup.freeze(u)
            elif verb == "thaw":
                await self.sup.thaw(u)
            else:
                raise ConflictError(f"unknown verb {verb}")
        except (StartFailure, CgroupError, OSError) as e:
            raise ConflictError(f"{name}: {verb} failed: {e}" if not isinstance(e, Refused) else str(e)) from None
        # The reply to a command is the unit's new state and figures, without the
        # process list (a /proc read per process): `supctl status` has that.
        return unit_status.unit_status(u, self.sup.driver, detail=False)

    async def _settle(self, u: UnitRun) -> None:
        """Wait until the unit is no longer in a transitional state (nor due to
        start). The stop timeout bounds how long a stop can take."""
        limit = (u.unit.stop.timeout + 15.0) if u.unit else 15.0
        with anyio.move_on_after(limit):
            while not u.gone.is_set():
                if u.state not in (states.UnitState.STARTING, states.UnitState.STOPPING) and not u.life.due(time.monotonic()):
                    return
                await self.sup.wait_changed()

    async def reload(self) -> dict[str, Any]:
        return await self._reload()

    def log_file(self, name: str) -> Path:
        self._unit(name)
        return unit_logs.log_path(self.sup.config.state_dir, name)

    def log_driver(self, name: str) -> str:
        """Where the unit's output goes now (its file's [exec].log_driver, else supd's)."""
        u = self._unit(name)
        unit = u.effective or u.unit
        return unit_logs.driver_of(unit.exec.log_driver if unit is not None else None, self.sup.log_driver)

    def read_journal(
        self, name: str, n: int, since_ns: int | None, until_ns: int | None, follow: bool
    ) -> AsyncIterator[bytes]:
        self._unit(name)
        return logtail.journal_records(self.sup.reaper, name, n, since_ns, until_ns, follow)

    def recent_events(self, n: int) -> list[dict[str, Any]]:
        return self.sup.events.recent(n)

    def subscribe_events(self) -> AbstractContextManager[ObjectReceiveStream[dict[str, Any]]]:
        return self.sup.events.subscribe()

    def tree(self) -> dict[str, Any]:
        return unit_status.tree(list(self.sup.units.values()), self.sup.driver)

    async def start_exec(
        self,
        name: str,
        argv: list[str],
        fds: tuple[int, int, int],
        *,
        user: str | None,
        env: dict[str, str],
        cwd: str | None,
        tty: bool = False,
        size: tuple[int, int] | None = None,
    ) -> ExecSession:
        u = self._unit(name)
        if u.pid is None or u.unit is None or u.state not in (states.UnitState.RUNNING,):
            raise ConflictError(f"{name} is {u.state.value}; exec needs a running unit")
        procs: tuple[str, ...] = ()
        if u.cgroup is not None:
            procs = tuple(str(Path(p) / "cgroup.procs") for _k, p in u.cgroup.paths)
        try:
            seccomp = seccomp_filter_for(u.unit)
        except SeccompError as e:
            raise ConflictError(f"exec in {name}: {e}") from None
        # the image's Env, User and WorkingDir apply to exec as to the process
        ran = u.effective or u.unit
        spec = build_exec_spec(ran, u.pid, procs, argv, user=user, env=env, cwd=cwd, seccomp=seccomp)
        if tty and spec.join is not None:
            spec = dataclasses.replace(spec, join=dataclasses.replace(spec.join, tty=True))
        pending = None
        try:
            pending = await self.sup.spawner.spawn(spec, stdio=fds)
            if tty and pending.tty is None:
                await pending.abort()
                raise SpawnError("tty: the process sent no terminal")
            if pending.tty is not None and size is not None:
                # before its exec: the command sees its size from the start
                set_window_size(pending.tty, *size)
            await pending.go()
        except SpawnError as e:
            if pending is not None and pending.tty is not None:
                os.close(pending.tty)
            raise ConflictError(f"exec in {name}: {e}") from None
        except BaseException:
            if pending is not None and pending.tty is not None:
                with anyio.CancelScope(shield=True):
                    await pending.abort()
                os.close(pending.tty)
            raise
        return ExecSession(pending.pid, lambda: self.sup.reaper.wait(pending.pid), pending.tty)

    async def images(self) -> list[dict[str, Any]]:
        if self._images is None:
            return []
        images, users, _kept = await anyio.to_thread.run_sync(self._image_usage, limiter=self._import_threads)
        return image_usage.image_rows(images, users)

    def _image_usage(self) -> tuple[list[Image], dict[str, tuple[str, ...]], frozenset[str]]:
        """The records, who uses each, and the layers removal must keep
        (blocking: reads the records and the units' layouts)."""
        assert self._images is not None
        store = self._images
        images = store.images()
        unit_images: list[image_usage.UnitImage] = []
        unit_layers: list[str] = []
        for name, u in sorted(self.sup.units.items()):
            rootfs = u.unit.rootfs if u.unit is not None else None
            if rootfs is None:
                continue
            if rootfs.image is not None:
                unit_images.append(image_usage.UnitImage(name, rootfs.image, store.digest_of(rootfs.image)))
            unit_layers += [layer for path in rootfs.layers if (layer := store.layer_of_path(path)) is not None]
            plan = u.rootfs_plan
            if u.pid is not None and plan is not None:
                # what its overlay is mounted on now, even if its tag has moved since
                base = Path(plan.chdir or "/")
                for lower in plan.lowerdirs:
                    layer = store.layer_of_path(Path(os.path.realpath(base / lower)))
                    if layer is not None:
                        unit_layers.append(layer)
        users = image_usage.users_by_digest(images, unit_images)
        return images, users, image_usage.kept_layers(images, users, unit_layers)

    def _remove_image(self, ref: str) -> Removal:
        assert self._images is not None
        image = self._images.find(ref)
        _images, users, kept = self._image_usage()
        if image.digest in users:
            units = ", ".join(users[image.digest])
            raise ConflictError(f"image rm {ref}: in use by unit(s) {units}; stop and remove those units first")
        return self._images.remove_image(image.digest, kept)

    def _prune_images(self) -> Removal:
        assert self._images is not None
        _images, _users, kept = self._image_usage()
        return self._images.prune(kept)

    async def remove_image(self, ref: str) -> dict[str, Any]:
        """Remove an image record and the layers nothing else uses; refused
        while a loaded unit uses it. In the image threads: no import or image
        start runs beside it on the store."""
        if self._images is None:
            raise ConflictError("no image store")
        try:
            removal = await anyio.to_thread.run_sync(self._remove_image, ref, limiter=self._import_threads)
        except ImageError as e:
            raise NotFoundError(f"image rm {ref}: {e}") from None
        except OSError as e:
            raise ConflictError(f"image rm {ref}: {e}") from None
        return removal.to_json()

    async def prune_images(self) -> dict[str, Any]:
        if self._images is None:
            raise ConflictError("no image store")
        try:
            removal = await anyio.to_thread.run_sync(self._prune_images, limiter=self._import_threads)
        except (ImageError, OSError) as e:
            raise ConflictError(f"image prune: {e}") from None
        return removal.to_json()

    async def export_kube(self, name: str, kind: str, namespace: str | None, image: str | None) -> dict[str, Any]:
        """The unit as its file says it, as manifests (supervisor/kube/export.py);
        a named user is looked up in its image's /etc/passwd here, where the
        layers are."""
        from supervisor.kube.export import ExportError, ExportOptions, export_unit, needs_push

        u = self._unit(name)
        unit = u.unit
        if unit is None:
            raise ConflictError(f"{name} has an invalid unit file: {u.error}")
        why = needs_push(unit)
        if image is None and why is not None:
            return {"unit": name, "needs_push": why}
        ids, config = await anyio.to_thread.run_sync(self._export_facts, unit, limiter=self._import_threads)
        try:
            result = export_unit(unit, ExportOptions(kind, namespace, image), ids, config)  # type: ignore[arg-type]
        except ExportError as e:
            raise BadRequestError(f"kube export {e}") from None
        return result.to_json()

    def _export_facts(self, unit: Any) -> tuple[tuple[int, int] | None, Any]:
        """(the uid and gid of the unit's named user in its root filesystem,
        its image's config); each None when not at hand (an image not pulled
        yet, no such user). Blocking: reads the store and the layers."""
        from supervisor.kube.export import numeric_ids
        from supervisor.kube.passwd import lookup_user

        rootfs = unit.rootfs
        if rootfs is None:
            return None, None
        layers, config = list(rootfs.layers), None
        if rootfs.image is not None and self._images is not None:
            try:
                stored = self._images.image(rootfs.image)
                layers, config = [self._images.layer_path(layer) for layer in stored.layers], stored.config
            except (ImageError, OSError):
                pass
        user = unit.exec.user
        ids = lookup_user(layers, user) if user is not None and numeric_ids(user) is None else None
        return ids, config

    async def import_image(self, path: str, tag: str) -> dict[str, Any]:
        if self._images is None:
            raise ConflictError("no image store")
        try:
            image = await anyio.to_thread.run_sync(
                self._images.import_image, Path(path), tag, limiter=self._import_threads
            )
        except (ImageError, OSError) as e:
            raise BadRequestError(f"image import {path}:{tag}: {e}") from None
        return image.to_json()

    async def pull_image(self, source: str, authfile: str | None) -> dict[str, Any]:
        if self._puller is None:
            raise ConflictError("no image store")
        try:
            canonical = image_source(source, Path("/"))
        except (SourceError, ReferenceError) as e:
            raise BadRequestError(f"image pull {source}: {e}") from None
        if is_layout(canonical):
            raise BadRequestError(f'image pull {source}: an OCI layout; use "supctl image import" (or oci-archive:/dir:)')
        try:
            image = await self._puller.pull(canonical, Path(authfile) if authfile else None)
        except ImageError as e:
            raise BadRequestError(f"image pull: {e}") from None
        except OSError as e:
            raise BadRequestError(f"image pull {canonical}: {e}") from None
        return image.to_json()

    async def push_image(
        self, source: str, destination: str, authfile: str | None, tls_verify: bool | None
    ) -> dict[str, Any]:
        """A unit (by name, first) or a stored image, pushed to `destination`."""
        if self._pusher is None or self._images is None:
            raise ConflictError("no image store")
        store = self._images
        u = self.sup.units.get(source)
        unit = u.unit if u is not None else None
        if u is not None and unit is None:
            raise ConflictError(f'image push {source}: unit "{source}" has an invalid unit file: {u.error}')

        def resolve() -> PushSource:
            return source_of_unit(unit, store) if unit is not None else source_of_image(source, store)

        try:
            what = await anyio.to_thread.run_sync(resolve, limiter=self._import_threads)
        except ImageError as e:
            raise BadRequestError(f"image push {source}: {e.message if e.file == source else e}") from None
        except OSError as e:
            raise BadRequestError(f"image push {source}: {e}") from None
        try:
            result = await self._pusher.push(what, destination, Path(authfile) if authfile else None, tls_verify)
        except ImageError as e:
            raise BadRequestError(f"image push {source}: {e}") from None
        except OSError as e:
            raise BadRequestError(f"image push {source} to {destination}: {e}") from None
        return result.to_json()
