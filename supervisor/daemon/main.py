"""`supd`: the daemon's entry point and its top-level task tree.

Order matters at start: the child-subreaper flag and the spawner come first,
before anything (anyio's worker threads, watchfiles' watcher thread) makes the
process multi-threaded — all forking happens in the single-threaded spawner.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import resource
import signal
import sys
from typing import Any

import anyio
import structlog

from supervisor import failpoints
from supervisor import log as logsetup
from supervisor import procfs
from supervisor.api import server as api_server
from supervisor.api.peercred import SocketGroupError
from supervisor.cgroups import ownership
from supervisor.cgroups.driver import CgroupError, CgroupRef, ScopeSpec
from supervisor.cgroups.select import open_driver
from supervisor.daemon import freezer, health, restore, unitdir
from supervisor.daemon import logs as unit_logs
from supervisor.daemon.config import ConfigError, DaemonConfig, load_config
from supervisor.daemon.controller import DaemonController
from supervisor.daemon.etcfiles import EtcFiles
from supervisor.daemon.events import EventBus
from supervisor.daemon.networking import Networks, network_problems
from supervisor.daemon.notify import Notifier
from supervisor.daemon.resilient import keep_running
from supervisor.daemon.state_store import StateStore, UnitRecord
from supervisor.daemon.statewriter import StateWriter
from supervisor.daemon.supervisor import StartFailure, Supervisor
from supervisor.daemon.unitrun import Command, UnitRun
from supervisor.daemon.userns import UsernsError, UsernsRanges
from supervisor.policy import lifecycle as lc
from supervisor.policy import resume
from supervisor.policy.state import UnitState
from supervisor.rootfs import overlay
from supervisor.rootfs.errors import ImageError, RootfsError
from supervisor.rootfs.pull import Puller, PullSettings
from supervisor.rootfs.push import Pusher
from supervisor.rootfs.store import LayerStore
from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner
from supervisor.units import deps
from supervisor.version import VERSION

log = structlog.get_logger()

# Housekeeping (log rotation) runs this often; everything else is event-driven.
# SUPD_HOUSEKEEPING_INTERVAL (seconds) shortens it for tests.
HOUSEKEEPING_INTERVAL = float(os.environ.get("SUPD_HOUSEKEEPING_INTERVAL", "30"))


def raise_nofile_limit() -> None:
    """One pidfd and one log fd per unit: lift the soft fd limit to the hard one
    (a service under systemd starts with a soft limit of 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Daemon:
    def __init__(self, config: DaemonConfig, spawner: Spawner, reaper: Reaper) -> None:
        self.config = config
        self.spawner = spawner
        self.reaper = reaper
        self.events = EventBus()
        self.notifier = Notifier.from_env()
        self.shutdown = anyio.Event()
        self.driver: Any = None
        self.store: LayerStore | None = None
        self.sup: Supervisor | None = None
        self._reload_lock = anyio.Lock()
        self.state = StateStore(config.state_dir)
        # Read once, here: "did the machine reboot?" is an input to every resume decision.
        self.boot_id = procfs.boot_id()
        self.root_lock: ownership.RootLock | None = None
        self.rejected: dict[str, str] = {}  # unit -> why its record was set aside
        self.writer = StateWriter(self.state)
        self.userns = UsernsRanges(config.subuid_file, config.subgid_file)
        self.networks = Networks(config.networks_dir, config.state_dir, config.runtime_dir, reaper)
        self.etc_files = EtcFiles(config.runtime_dir)
        # a unit's address after its CNI ADD (or CHECK) goes into its peers' /etc/hosts
        self.networks.on_address = self.etc_files.set_address

    # ------------------------------------------------------------ helpers
    def info(self) -> dict[str, Any]:
        assert self.sup is not None
        counts: dict[str, int] = {}
        for u in self.sup.units.values():
            counts[u.state.value] = counts.get(u.state.value, 0) + 1
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "driver": self.driver.name if self.driver else None,
            "cgroup": self.driver.describe() if self.driver else "none",
            "units_dir": str(self.config.units_dir),
            "state_dir": str(self.config.state_dir),
            "runtime_dir": str(self.config.runtime_dir),
            "live_restore": self.config.live_restore,
            "units": len(self.sup.units),
            "states": counts,
        }

    def _status_line(self) -> str:
        assert self.sup is not None
        states = [u.state for u in self.sup.units.values()]
        running = sum(s in (UnitState.RUNNING, UnitState.FROZEN) for s in states)
        failed = sum(s in (UnitState.FAILED, UnitState.ERROR) for s in states)
        return f"{len(states)} units: {running} running, {failed} failed"

    async def _open_driver(self) -> Any:
        return await open_driver(self.config.cgroup_driver, self.config.cgroup_root)

    async def _ensure_image(self, unit: Any) -> None:
        """A unit's image pulled (per [rootfs].pull) before its rootfs is made."""
        try:
            await self.puller.ensure(unit.rootfs.image, unit.rootfs.pull)
        except (ImageError, OSError) as e:
            raise StartFailure(str(RootfsError(unit.file, "[rootfs].image", str(e)))) from None

    def _prepare_rootfs(self, unit: Any) -> tuple[Any, Any]:
        """The mount plan and the image's config, from one look-up of the image
        (a pulled source's is a scan of the store's records)."""
        try:
            image = overlay.unit_image(unit, self.store)
            plan = overlay.prepare(unit, self.config.state_dir, self.config.runtime_dir, self.store, image)
            if unit.rootfs.userns == "auto":
                self.userns.allocate(unit, plan.upperdir)
            return plan, image.config if image is not None else None
        except (RootfsError, UsernsError) as e:
            raise StartFailure(str(e)) from None

    def _image_config(self, unit: Any) -> Any:
        """The config of the unit's image (a re-adopted unit's: it is stored)."""
        try:
            return self.store.image(unit.rootfs.image).config
        except ImageError as e:
            raise StartFailure(f"{unit.file}: [rootfs].image: {e}") from None

    def _cleanup_rootfs(self, unit: Any) -> None:
        assert unit.rootfs is not None
        overlay.cleanup(unit.name, unit.rootfs.writable, self.config.state_dir, self.config.runtime_dir)
        # the process is gone: its ids may go to the next userns unit
        self.userns.release(unit.name)

    # ------------------------------------------------------------- reload
    def _scan(self) -> dict[str, unitdir.Loaded]:
        loaded = unitdir.scan(self.config.units_dir)
        units = {n: entry.unit for n, entry in loaded.items() if entry.unit is not None}
        for name, problem in deps.check(units).items():
            entry = loaded[name]
            loaded[name] = unitdir.Loaded(entry.name, entry.file, None, f"{entry.file}: [unit]: {problem}")
        units = {n: entry.unit for n, entry in loaded.items() if entry.unit is not None}
        for name, problem in network_problems(self.config.networks_dir, units).items():
            entry = loaded[name]
            loaded[name] = unitdir.Loaded(entry.name, entry.file, None, f"{entry.file}: [rootfs].network: {problem}")
        return loaded

    async def reload(self) -> dict[str, Any]:
        """Rescan the units folder and send each unit what changed. Stops run
        in the units' own tasks, concurrently: a unit with a long stop timeout
        delays neither this reply nor any other file. A live resource update
        the kernel refused is listed under "refused"."""
        assert self.sup is not None
        sup = self.sup
        async with self._reload_lock:
            self.notifier.reloading()
            loaded = await anyio.to_thread.run_sync(self._scan)  # parses every file: off the loop
            result: dict[str, Any] = {"added": [], "changed": [], "removed": [], "errors": {}, "refused": {}}
            for name, u in list(sup.units.items()):
                if name not in loaded and not u.removed:
                    result["removed"].append(name)
                    await sup.remove(u, wait=False)
                    self.writer.remove(name)
            changed: list[tuple[str, Any, Any]] = []
            for name, entry in loaded.items():
                if entry.error is not None:
                    result["errors"][name] = entry.error
                u = sup.units.get(name)
                if u is None or u.removed:
                    sup.add(entry)
                    result["added"].append(name)
                elif entry.unit != (u.next_unit[0] if u.next_unit is not None else u.unit) or (entry.unit is None and entry.error != u.error):
                    changed.append((name, u, entry))

            async def redefine(name: str, u: Any, entry: Any) -> None:
                what = await sup.redefine(u, entry)
                if what.startswith("update-refused"):
                    result["refused"][name] = what.split(": ", 1)[1]
                    what = "update-refused"
                result["changed"].append({"name": name, "action": what})

            async with anyio.create_task_group() as tg:
                for args in changed:
                    tg.start_soon(redefine, *args)
            result["changed"].sort(key=lambda c: c["name"])
            self.notifier.ready(self._status_line())
            return result

    # -------------------------------------------------------- live-restore
    def _persist(self, u: UnitRun) -> None:
        if not u.removed and u.state in restore.PERSISTED_STATES:
            self.writer.save(restore.record_for(u, self.boot_id))

    async def _record_launch(self, u: UnitRun, pid: int, ref: CgroupRef | None) -> None:
        if not u.removed:
            await self.writer.write_through(restore.record_for(u, self.boot_id, launch=(pid, ref)))

    def _lock_root(self) -> None:
        """One supd per cgroup root (cgroups/ownership.py): refuse to start
        beside another, naming it, before touching any scope."""
        directory = self.driver.lock_directory() if self.driver is not None else None
        if directory is None:
            log.warning("cgroup_root_not_locked", why="the cgroup driver sees no root directory to lock")
            return
        owner = ownership.Owner(os.getpid(), str(self.config.state_dir), str(self.config.runtime_dir))
        self.root_lock = ownership.acquire(directory, owner)

    def _load_records(self) -> dict[str, UnitRecord]:
        """This supd's records, each checked before anything acts on it: a
        cgroup that is not the unit's scope inside supd's slices makes the
        record corrupt (set aside, the unit `failed` with the reason)."""
        records, problems = self.state.load_all()
        for problem in problems:
            log.warning("state_file_ignored", problem=problem)
        for name, record in list(records.items()):
            if record.cgroup and self.driver is not None and record.cgroup.get("driver") != self.driver.name:
                # cgroup_driver changed: that scope is not this driver's to judge or touch
                log.warning("state_record_other_driver", unit=name, driver=record.cgroup.get("driver"))
                records[name] = record = dataclasses.replace(record, pid=None, cgroup=None)
            problem = self._record_problem(record)
            if problem is not None:
                del records[name]
                self.rejected[name] = self.state.reject(name, problem)
                log.error("state_record_rejected", unit=name, problem=self.rejected[name])
        return records

    def _record_problem(self, record: UnitRecord) -> str | None:
        if not record.cgroup or self.driver is None:
            return None
        try:
            ref = CgroupRef.from_json(record.cgroup)
        except CgroupError as e:
            return f"unit.cgroup: {e}"
        problem = self.driver.scope_path_problem(record.name, ref)
        return None if problem is None else f"unit.cgroup.{problem}"

    def _ours_or_empty(self, found: CgroupRef, recorded: CgroupRef | None) -> bool:
        """Stale-scope removal touches a scope only if this supd's record names
        it, or nothing runs in it."""
        if recorded is not None and {p for _k, p in recorded.paths} & {p for _k, p in found.paths}:
            return True
        pids = self.driver.pids(found)
        if pids:
            log.warning("stale_scope_not_ours", unit=found.unit, scope=found.scope, pids=pids)
        return not pids

    async def _take_over(
        self, loaded: dict[str, unitdir.Loaded], records: dict[str, UnitRecord]
    ) -> dict[str, tuple[UnitRecord, restore.Adoption]]:
        """Judge what a previous supd left behind: processes to re-adopt, and
        scopes of processes that ended (or were never recorded) to clear first."""
        verdicts: dict[str, tuple[UnitRecord, restore.Adoption]] = {}
        for name, entry in loaded.items():
            record = records.get(name)
            same_boot = record is not None and resume.same_boot(record.boot_id, self.boot_id)
            adoption = restore.judge(record, same_boot) if record is not None else None
            if record is not None and adoption is not None:
                verdicts[name] = (record, adoption)
            if self.driver is None:
                continue
            if entry.unit is None:
                # The file is invalid now: like an edit to an invalid file while
                # running, the unit stops; nothing may run unsupervised.
                if adoption is not None and adoption.cgroup is not None:
                    try:
                        await self.driver.remove(adoption.cgroup)
                        log.info("stale_scope_removed", unit=name, why="unit file is invalid now")
                    except (CgroupError, OSError) as e:
                        log.warning("stale_scope_remove_failed", unit=name, error=str(e))
                continue
            if adoption is not None and adoption.verdict == "adopt":
                continue
            # Not adoptable: whatever is left in its scope is not supervised by anyone.
            stale = self.driver.find(ScopeSpec.for_unit(entry.unit))
            # A record of this unit from this boot makes its scope ours even when
            # the record predates the scope's last making: a supd killed between
            # placing a (re)started process and saving its record leaves that
            # process in the unit's scope under the root it owned (the lock says
            # no other supd was there), and it must end, not block the start.
            recorded_this_boot = record is not None and same_boot
            if stale is not None and (
                recorded_this_boot or self._ours_or_empty(stale, adoption.cgroup if adoption else None)
            ):
                try:
                    await self.driver.remove(stale)
                    log.info("stale_scope_removed", unit=name, why=adoption.why if adoption else "no state recorded")
                except (CgroupError, OSError) as e:
                    log.warning("stale_scope_remove_failed", unit=name, error=str(e))
            if entry.unit.rootfs is not None:
                self.etc_files.forget(name)  # first: the mount point's folder goes only when empty
                self._cleanup_rootfs(entry.unit)
        for name in records:
            if name not in loaded:
                self.state.remove(name)
        return verdicts

    def _restore_unit(self, u: UnitRun, record: UnitRecord, adoption: restore.Adoption) -> None:
        """Hand the unit's task what the record and /proc say (it applies the
        resume as its first lifecycle step), and what it needs to adopt."""
        plan = resume.decide(
            state=record.state,
            user_stopped=record.user_stopped,
            shutdown_stopped=record.shutdown_stopped,
            restarts=record.restarts,
            recorded_boot=record.boot_id,
            current_boot=self.boot_id,
            process=restore.PROCESS[adoption.verdict],
        )
        log.info("unit_resumed", unit=u.name, action=plan.action, why=plan.why)
        if resume.same_boot(record.boot_id, self.boot_id):  # a reboot starts the count again, as restarts'
            u.oom_kills_earlier = restore.recorded_oom_kills(record)
        unit = u.unit
        if plan.action == "adopt" and unit is not None:
            if "userns" in record.extra:  # before any start can allocate ids
                u.userns = self.userns.claim(u.name, record.extra["userns"])
            u.adopt_pid = record.pid
            u.adopt_since = record.since
            u.cgroup = adoption.cgroup
            ran_on = restore.definition_it_ran_on(unit, record)
            if ran_on is not None:
                # Edited while supd was away: once adopted, the unit takes the
                # new file as it would an edit while running (live for
                # [resources] alone, else a restart on the new definition).
                log.info("unit_changed_while_away", unit=u.name, live=ran_on is not unit)
                u.unit = ran_on
                u.inbox.append(Command("redefine", loaded=unitdir.Loaded(u.name, u.file, unit, None)))
        self.sup.resume(
            u,
            lc.Resumed(
                plan.action,
                "restored" if plan.action == "failed" else (adoption.why if plan.action == "ended" else plan.why),
                restarts=plan.restarts,
                user_stopped=plan.user_stopped,
                last_exit=restore.recorded_exit(record),
                new_boot=not resume.same_boot(record.boot_id, self.boot_id),
                frozen_by_user=record.frozen_by_user,
                error=record.error,
            ),
        )

    # --------------------------------------------------------------- tasks
    async def _watch_units(self) -> None:
        await failpoints.ahit("inotify.setup")
        async for _ in unitdir.watch(self.config.units_dir, self.shutdown):
            result = await self.reload()
            if any(result[k] for k in ("added", "changed", "removed")):
                log.info("units_dir_changed", **{k: v for k, v in result.items() if v})

    async def _signals(self) -> None:
        # The receiver stays open until supd exits: a second SIGTERM (timeout(1)
        # and init systems send more than one) must not kill supd halfway
        # through stopping its units and leave them unsupervised.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP and not self.shutdown.is_set():
                    log.info("reload_requested", signal=name)
                    try:
                        await self.reload()
                    except Exception:  # the signal handler must outlive a failed reload
                        log.exception("reload_failed", signal=name)
                elif self.shutdown.is_set():
                    log.info("shutdown_in_progress", signal=name)
                else:
                    log.info("shutdown_requested", signal=name)
                    self.shutdown.set()

    def _rotate_logs(self, names: list[str]) -> None:
        for name in names:
            try:
                failpoints.hit("log.rotate", name)
                unit_logs.rotate_if_needed(
                    unit_logs.log_path(self.config.state_dir, name), self.config.log_max_bytes, self.config.log_keep
                )
            except OSError as e:  # a full disk stops one rotation, not supd
                log.warning("log_rotate_failed", unit=name, error=str(e))

    async def _housekeeping(self) -> None:
        while True:
            await anyio.sleep(HOUSEKEEPING_INTERVAL)
            assert self.sup is not None
            await anyio.to_thread.run_sync(self._rotate_logs, list(self.sup.units))
            if self.notifier.enabled:
                self.notifier.status(self._status_line())

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval)

    async def _stop_all(self) -> None:
        assert self.sup is not None
        sup = self.sup

        async def stop(u: UnitRun) -> None:
            try:
                await sup.stop(u, resume.SHUTDOWN_REASON)
            except StartFailure:
                pass  # removed meanwhile

        # Bounded: a stop that cannot finish (a frozen parent) must not keep
        # supd from exiting; what is left is reported.
        limit = max((u.unit.stop.timeout for u in sup.units.values() if u.unit is not None), default=0.0) + 15.0
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(limit):
                async with anyio.create_task_group() as tg:
                    for u in list(sup.units.values()):
                        if u.active or u.want_running:
                            tg.start_soon(stop, u)
                while any(u.active for u in sup.units.values()):
                    await sup.wait_changed()
        left = [u.name for u in sup.units.values() if u.active]
        if left:
            log.warning("units_not_stopped", units=left, waited=limit)

    async def run(self) -> None:
        config = self.config
        for d in (config.state_dir, config.runtime_dir, config.state_dir / "logs"):
            d.mkdir(parents=True, exist_ok=True)
        self.driver = await self._open_driver()
        self._lock_root()
        self.store = LayerStore(config.state_dir)
        # finish removals a killed supd left half done (before any unit mounts a layer)
        try:
            await anyio.to_thread.run_sync(self.store.recover)
        except OSError as e:
            log.warning("store_recover_failed", state_dir=str(config.state_dir), error=str(e))
        self.sup = Supervisor(
            config,
            self.spawner,
            self.reaper,
            self.driver,
            self.events,
            prepare_rootfs=self._prepare_rootfs,
            cleanup_rootfs=self._cleanup_rootfs,
            networks=self.networks,
            image_config=self._image_config,
            etc_files=self.etc_files,
        )
        # Policies beside every running process: [health] checks, [freeze] near_memory_max and max_frozen.
        self.sup.run_watchers += [health.health_watcher, freezer.near_memory_max_watcher, freezer.max_frozen_watcher]
        self.sup.userns_of = self.userns.held
        self.puller = Puller(
            config.state_dir,
            self.store,
            self.reaper,
            PullSettings(config.insecure_registries, config.auth_file, config.certs_dir),
            self.sup.image_threads,
        )
        self.sup.ensure_image = self._ensure_image
        self.pusher = Pusher(
            config.state_dir,
            self.store,
            self.reaper,
            PullSettings(config.insecure_registries, config.auth_file, config.certs_dir),
            self.sup.image_threads,
        )
        controller = DaemonController(self.sup, self.reload, self.info, self.store, self.puller, self.pusher)
        log.info(
            "supd_starting",
            version=VERSION,
            pid=os.getpid(),
            units_dir=str(config.units_dir),
            cgroup=self.driver.describe() if self.driver else "none",
        )
        async with anyio.create_task_group() as tg:
            self.sup.attach(tg)
            # Daemon-wide tasks survive their own errors (daemon/resilient.py).
            tg.start_soon(keep_running, "reaper", self.reaper.run)
            tg.start_soon(keep_running, "state_writer", self.writer.run)
            serve = functools.partial(api_server.serve, group=config.socket_group, admin_group=config.admin_group)
            await tg.start(keep_running, "api_server", serve, config.socket_path, controller)
            tg.start_soon(self._signals)
            tg.start_soon(keep_running, "host_pressure", freezer.host_pressure_task, self.sup)
            loaded = self._scan()
            records = self._load_records()
            if self.driver is not None:
                owned = [CgroupRef.from_json(r.cgroup) for r in records.values() if r.cgroup]
                removed = await self.driver.remove_stale(keep=set(loaded), owned=owned)
                if removed:
                    log.info("stale_scopes_removed", scopes=removed)
            # before the mount points: their folder goes only when it is empty
            etc_left = self.etc_files.remove_leftovers(keep=set(loaded))
            if etc_left:
                log.info("etc_files_leftovers_removed", units=etc_left)
            leftovers = overlay.remove_leftovers(config.state_dir, config.runtime_dir, keep=set(loaded))
            if leftovers:
                log.info("rootfs_leftovers_removed", units=leftovers)
            verdicts = await self._take_over(loaded, records)
            # CNI DEL for every attachment whose unit will not be re-adopted
            # (supd killed, a reboot, a unit gone), before any unit can start
            adopting = {n for n, (_r, a) in verdicts.items() if a.verdict == "adopt" and loaded[n].unit is not None}
            reconciled = await self.networks.reconcile(keep=adopting)
            if reconciled:
                log.info("network_attachments_removed", units=reconciled)
            self.sup.on_state_change = self._persist
            self.sup.on_launch = self._record_launch
            for name, entry in loaded.items():
                u = self.sup.add(entry)
                if name in verdicts:
                    self._restore_unit(u, *verdicts[name])
                elif name in self.rejected and u.unit is not None:
                    self.sup.resume(u, lc.Resumed("failed", "state record rejected", error=self.rejected[name]))
            tg.start_soon(keep_running, "units_watch", self._watch_units)
            tg.start_soon(keep_running, "housekeeping", self._housekeeping)
            interval = self.notifier.watchdog_interval()
            if interval:
                tg.start_soon(self._watchdog, interval)
            self.notifier.ready(self._status_line())
            log.info("supd_ready", units=len(loaded), socket=str(config.socket_path))
            await self.shutdown.wait()
            self.notifier.stopping()
            if config.live_restore:
                self.sup.detaching = True
                log.info("supd_detaching", reason="live_restore", running=sum(u.active for u in self.sup.units.values()))
            else:
                await self._stop_all()
            tg.cancel_scope.cancel()
        self.writer.flush()  # the last states (stopped, or running for live-restore)
        if self.driver is not None:
            await self.driver.aclose()
        if self.root_lock is not None:
            self.root_lock.release()
        log.info("supd_stopped")


def main(argv: list[str] | None = None) -> None:
    try:
        config = load_config(argv)
    except ConfigError as e:
        print(f"supd: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        failpoints.arm_from_env()
    except failpoints.FailpointSpecError as e:
        print(f"supd: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    logsetup.configure(config.log_format)
    raise_nofile_limit()
    reaper = Reaper.install()
    spawner = Spawner.launch(reaper)
    daemon = Daemon(config, spawner, reaper)
    try:
        anyio.run(daemon.run, backend="asyncio")
    except KeyboardInterrupt:
        pass
    except BaseException as e:
        fatal = _startup_error(e)
        if fatal is None:
            raise
        print(f"supd: {fatal}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        spawner.close()


def _startup_error(e: BaseException) -> BaseException | None:
    """The one clear error behind a failed start (a live socket, a bad socket
    group ...), unwrapped from the task group's exception group."""
    expected = (
        api_server.SocketInUseError,
        api_server.SocketPathError,
        SocketGroupError,
        ConfigError,
        ownership.RootOwnedError,
    )
    if isinstance(e, expected):
        return e
    if isinstance(e, BaseExceptionGroup):
        for inner in e.exceptions:
            found = _startup_error(inner)
            if found is not None:
                return found
    return None


if __name__ == "__main__":
    main()

