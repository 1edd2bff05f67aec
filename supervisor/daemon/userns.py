"""The daemon's side of `[rootfs].userns = "auto"`: which unit holds which ids
(policy/idranges.py does the arithmetic), read from the subuid/subgid files at
every allocation (an edit needs no supd restart), and the ownership of the
unit's upper dir, which must belong to the unit's mapped root on disk.

Allocations run on worker threads (rootfs preparation), claims and releases
on the event loop: one lock serialises them.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import structlog

from supervisor.policy import idranges
from supervisor.policy.idranges import IdMapping, SubidError
from supervisor.units.model import Unit

log = structlog.get_logger()

KEY = "[rootfs].userns"


class UsernsError(ValueError):
    """A userns unit that cannot get its ids; names the unit file and key."""


class UsernsRanges:
    def __init__(self, subuid: Path | str = "/etc/subuid", subgid: Path | str = "/etc/subgid") -> None:
        self.subuid, self.subgid = Path(subuid), Path(subgid)
        self._alloc = idranges.IdAllocator()
        self._lock = threading.Lock()

    def _ranges(self, path: Path) -> tuple[idranges.IdRange, ...]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as e:
            raise SubidError(f"{path}: cannot read it ({e})") from None
        entries = idranges.parse_subid(text, str(path))
        ranges = idranges.supd_ranges(entries)
        if not ranges:
            raise idranges.NoSubidEntry(idranges.missing_entry_message(str(path), entries))
        return ranges

    def allocate(self, unit: Unit, upperdir: str | None = None) -> IdMapping:
        """The unit's ids: those it holds already, else the block its upper
        dir was made for when that one is free, else the first free one. Its
        upper dir is then owned (shifted if need be) by the mapped root."""
        with self._lock:
            try:
                uids, gids = self._ranges(self.subuid), self._ranges(self.subgid)
                mapping = self._alloc.allocate(
                    unit.name, uids, gids, prefer=_made_for(upperdir), where=(str(self.subuid), str(self.subgid))
                )
            except SubidError as e:
                raise UsernsError(f"{unit.file}: {KEY}: {e}") from None
        if upperdir is not None:
            try:
                own_upper(Path(upperdir), mapping)
            except OSError as e:
                self.release(unit.name)
                raise UsernsError(f"{unit.file}: {KEY}: cannot give {upperdir} to uid {mapping.uid}: {e}") from None
        log.info("userns_allocated", unit=unit.name, uid=mapping.uid, gid=mapping.gid, count=mapping.count)
        return mapping

    def claim(self, name: str, recorded: object) -> IdMapping | None:
        """A re-adopted unit keeps the ids its record names. A record that is
        unreadable or conflicts is logged (None): the process runs on regardless."""
        try:
            mapping = IdMapping.from_json(recorded)
            with self._lock:
                self._alloc.claim(name, mapping)
        except (ValueError, SubidError) as e:
            log.error("userns_claim_failed", unit=name, error=str(e))
            return None
        log.info("userns_claimed", unit=name, uid=mapping.uid, gid=mapping.gid)
        return mapping

    def release(self, name: str) -> None:
        with self._lock:
            mapping = self._alloc.release(name)
        if mapping is not None:
            log.info("userns_released", unit=name, uid=mapping.uid)

    def held(self, name: str) -> IdMapping | None:
        with self._lock:
            return self._alloc.held(name)


def _made_for(upperdir: str | None) -> IdMapping | None:
    """The block an existing upper dir belongs to (its owner is the mapped
    root of the unit's last userns), so a restart keeps the same ids."""
    if upperdir is None:
        return None
    try:
        st = os.lstat(upperdir)
    except OSError:
        return None
    if st.st_uid == 0 and st.st_gid == 0:
        return None
    return IdMapping(st.st_uid, st.st_gid)


def own_upper(upper: Path, mapping: IdMapping) -> None:
    """Make the upper dir (and what a previous run left in it) belong to the
    mapping. Its owner says which ids it was made for: root (a new dir, or a
    unit that ran in the host's user namespace) or an earlier block. Ids in
    that old block move to the same place in the new one; others stay.
    Lower layers are never touched: they are mounted id-mapped."""
    st = os.lstat(upper)
    old_uid, old_gid = st.st_uid, st.st_gid
    if (old_uid, old_gid) == (mapping.uid, mapping.gid):
        return
    count = mapping.count

    def shift(path: str, entry: os.stat_result) -> None:
        uid, gid = entry.st_uid, entry.st_gid
        new_uid = uid - old_uid + mapping.uid if old_uid <= uid < old_uid + count else uid
        new_gid = gid - old_gid + mapping.gid if old_gid <= gid < old_gid + count else gid
        if (new_uid, new_gid) == (uid, gid):
            return
        os.lchown(path, new_uid, new_gid)
        # chown clears set-user-id and set-group-id bits: put them back
        if stat.S_ISREG(entry.st_mode) and entry.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(entry.st_mode))

    for folder, dirs, files in os.walk(upper):
        for name in dirs + files:
            path = os.path.join(folder, name)
            shift(path, os.lstat(path))
    shift(str(upper), st)  # last: the owner is the marker of a finished shift
    log.info("userns_upper_shifted", upper=str(upper), from_uid=old_uid, to_uid=mapping.uid)
