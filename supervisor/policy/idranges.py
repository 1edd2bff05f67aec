"""Id ranges for `[rootfs].userns = "auto"`: parse /etc/subuid and /etc/subgid,
and hand each container unit its own block of 65536 ids. Pure: no I/O.

The files have shadow-utils' format, one range a line: `owner:start:count`
(owner is a user name or a uid). supd uses the lines whose owner is `supd`;
several are allowed and they are cut into whole blocks of `BLOCK` ids,
each aligned to its line's start. Lines of other owners are read too, only
to refuse a supd range that overlaps one of theirs (their ids would be
shared with a container of ours).

A unit's block is held from its start until its process is gone, and is
never given to another unit meanwhile; a restarted supd claims the blocks its
records name for the units it re-adopts before it starts anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BLOCK = 65536  # ids per unit: a whole 16-bit id space, as podman's --userns=auto size
OWNER = "supd"
SUGGESTED_START = 100000  # where shadow-utils' useradd starts handing out ranges
SUGGESTED_COUNT = 16 * BLOCK


class SubidError(ValueError):
    """A subuid/subgid file that cannot be used; the message names it."""


class NoSubidEntry(SubidError):
    """No `supd` line: the message says what to add."""


class RangesExhausted(SubidError):
    """Every block is held by another unit."""


class RangeConflict(SubidError):
    """A recorded range overlaps one another unit holds."""


@dataclass(frozen=True, order=True)
class IdRange:
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count

    def overlaps(self, other: IdRange) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class SubidEntry:
    owner: str
    range: IdRange
    line: int  # 1-based line number in its file
    text: str


@dataclass(frozen=True)
class IdMapping:
    """What a unit holds: container ids 0..count-1 are host uid..uid+count-1
    (and gid..gid+count-1)."""

    uid: int
    gid: int
    count: int = BLOCK

    @property
    def uids(self) -> IdRange:
        return IdRange(self.uid, self.count)

    @property
    def gids(self) -> IdRange:
        return IdRange(self.gid, self.count)

    def to_json(self) -> dict[str, int]:
        return {"uid": self.uid, "gid": self.gid, "count": self.count}

    @classmethod
    def from_json(cls, data: Any) -> IdMapping:
        """Raises ValueError naming the field (a state record is outside input)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"userns: expected an object, got {data!r}")
        values = {}
        for key in ("uid", "gid", "count"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "count" else 0):
                raise ValueError(f"userns.{key}: expected a {'positive' if key == 'count' else 'non-negative'} integer, got {value!r}")
            values[key] = value
        if values["uid"] + values["count"] > 2**32 - 1 or values["gid"] + values["count"] > 2**32 - 1:
            raise ValueError(f"userns: range beyond the 32-bit id space: {dict(data)!r}")
        return cls(**values)


def parse_subid(text: str, path: str) -> tuple[SubidEntry, ...]:
    """Every range line of a subuid/subgid file. A line that is not
    `owner:start:count` with a positive count inside the 32-bit id space, or
    a supd range that overlaps another range, is an error naming the file,
    the line number and the line."""
    entries: list[SubidEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        where = f"{path}:{number}: {line!r}"
        if len(fields) != 3 or not fields[0]:
            raise SubidError(f'{where}: expected "owner:start:count" (e.g. "{OWNER}:{SUGGESTED_START}:{BLOCK}")')
        owner, start, count = fields
        if not (start.isdigit() and count.isdigit()):
            raise SubidError(f"{where}: start and count must be decimal integers")
        entry = SubidEntry(owner, IdRange(int(start), int(count)), number, line)
        if entry.range.count == 0:
            raise SubidError(f"{where}: count must be at least 1")
        if entry.range.end > 2**32 - 1:
            raise SubidError(f"{where}: the range ends past the last 32-bit id (4294967294)")
        entries.append(entry)
    for i, mine in enumerate(entries):
        if mine.owner != OWNER:
            continue
        for other in entries[:i] + entries[i + 1 :]:
            if mine.range.overlaps(other.range) and (other.owner != OWNER or other.line < mine.line):
                raise SubidError(
                    f"{path}:{mine.line}: {mine.text!r} overlaps line {other.line} {other.text!r}: "
                    "the ids of one range would be shared by two owners or two containers"
                )
    return tuple(entries)


def supd_ranges(entries: Iterable[SubidEntry]) -> tuple[IdRange, ...]:
    return tuple(e.range for e in entries if e.owner == OWNER)


def missing_entry_message(path: str, others: Iterable[SubidEntry] = ()) -> str:
    """What to add, with a start past every range already given out."""
    start = max([SUGGESTED_START, *(e.range.end for e in others)])
    line = f"{OWNER}:{start}:{SUGGESTED_COUNT}"
    return (
        f'{path} has no "{OWNER}" entry: add a line like "{line}" to /etc/subuid and /etc/subgid '
        f"({SUGGESTED_COUNT // BLOCK} userns units of {BLOCK} ids)"
    )


def blocks(ranges: Sequence[IdRange], size: int = BLOCK) -> list[IdRange]:
    """The whole blocks the ranges hold, in file order (a remainder under
    `size` at a range's end is not used)."""
    out: list[IdRange] = []
    for r in ranges:
        for i in range(r.count // size):
            out.append(IdRange(r.start + i * size, size))
    return out


class IdAllocator:
    """Which unit holds which ids. Not thread-safe: the caller serialises."""

    def __init__(self) -> None:
        self._held: dict[str, IdMapping] = {}

    def held(self, name: str) -> IdMapping | None:
        return self._held.get(name)

    def holders(self) -> dict[str, IdMapping]:
        return dict(self._held)

    def allocate(
        self,
        name: str,
        uid_ranges: Sequence[IdRange],
        gid_ranges: Sequence[IdRange],
        prefer: IdMapping | None = None,
        where: tuple[str, str] = ("/etc/subuid", "/etc/subgid"),
    ) -> IdMapping:
        """The unit's block (the one it holds already, else `prefer` when it
        is free and inside the ranges, else the first free one)."""
        if name in self._held:
            return self._held[name]
        others = [m for n, m in self._held.items() if n != name]
        free_uids = [b for b in blocks(uid_ranges) if not any(b.overlaps(m.uids) for m in others)]
        free_gids = [b for b in blocks(gid_ranges) if not any(b.overlaps(m.gids) for m in others)]
        for ids, free, path in ((uid_ranges, free_uids, where[0]), (gid_ranges, free_gids, where[1])):
            if not free:
                total = len(blocks(ids))
                users = ", ".join(sorted(self._held)) or "nobody"
                if total == 0:
                    raise RangesExhausted(f'{path}: the "{OWNER}" ranges hold no whole block of {BLOCK} ids')
                raise RangesExhausted(
                    f'{path}: all {total} blocks of {BLOCK} ids of "{OWNER}" are in use (by {users}); '
                    f'give "{OWNER}" a larger range'
                )
        uid, gid = free_uids[0], free_gids[0]
        if prefer is not None and prefer.count == BLOCK:
            uid = next((b for b in free_uids if b.start == prefer.uid), uid)
            gid = next((b for b in free_gids if b.start == prefer.gid), gid)
        mapping = IdMapping(uid.start, gid.start, BLOCK)
        self._held[name] = mapping
        return mapping

    def claim(self, name: str, mapping: IdMapping) -> None:
        """Hold a recorded mapping again (a re-adopted unit keeps its ids, even
        if the subid files changed meanwhile). A mapping that overlaps
        another unit's is refused: two running units would share ids."""
        for other, held in self._held.items():
            if other != name and (held.uids.overlaps(mapping.uids) or held.gids.overlaps(mapping.gids)):
                raise RangeConflict(
                    f"uids {mapping.uid}-{mapping.uids.end - 1} / gids {mapping.gid}-{mapping.gids.end - 1} "
                    f"recorded for {name} overlap those held by {other}"
                )
        self._held[name] = mapping

    def release(self, name: str) -> IdMapping | None:
        return self._held.pop(name, None)
