"""Crash-safe per-unit state, so that a restarted supd can re-adopt the units
a previous supd left running (live-restore).

One JSON file per unit at `state_dir/state/<name>.json`:
`{"version": 1, "unit": {...UnitRecord...}}`. A save writes a temporary file
in the same folder, fsyncs it, renames it over the old one and fsyncs the
folder, so after a crash at any point the file is either the old record or
the new one, never a mix (crun's status.c does the same write-then-rename).

Reading never fails the daemon: a file that is torn, corrupt, of the wrong
shape or of another format version is reported as a human-readable problem
and moved aside to `<name>.json.corrupt` for a human to look at.

A pid alone is not an identity: after a reboot or a long downtime the kernel
may have given it to an unrelated process. A record therefore keeps the
process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot)
and the boot id; `procfs.same_process` compares pid and start time, as runc's
`hasInit` does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger()

FORMAT_VERSION = 1
STATE_SUBDIR = "state"
RECORD_SUFFIX = ".json"
CORRUPT_SUFFIX = ".corrupt"
TEMP_SUFFIX = ".tmp"



class StateStoreError(Exception):
    """A record that cannot be saved, or a state file that cannot be read."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class UnitRecord:
    """What supd must remember about a unit across its own restarts."""

    name: str
    state: str
    since: float  # wall-clock epoch seconds of the last transition
    pid: int | None = None
    pid_start_time: int | None = None  # /proc/<pid>/stat field 22
    cgroup: dict[str, Any] | None = None  # a CgroupRef as JSON
    restarts: int = 0
    last_exit: dict[str, Any] | None = None  # {"code", "signal", "reason"}
    definition: str = ""  # hash of the unit definition it was started from
    started_at: float | None = None  # wall-clock epoch seconds
    user_stopped: bool = False
    frozen_by_user: bool = False
    # /proc/sys/kernel/random/boot_id when written: pids and start times only
    # mean something within one boot ("" in records of supd 0.1.0).
    boot_id: str = ""
    # supd itself stopped the unit at its shutdown (live_restore = false): the
    # next supd starts it again.
    shutdown_stopped: bool = False
    # the [resources] the process was started with (or last updated to): tells
    # a restarted supd whether an edit made meanwhile can be applied live
    resources: dict[str, Any] | None = None
    error: str | None = None  # why it failed (state failed), for `supctl status` after a restart
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# field name -> (accepted Python types, what a human should be told was expected)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"),
    "state": ((str,), "a string"),
    "since": ((int, float), "a number"),
    "pid": ((int, type(None)), "an integer or null"),
    "pid_start_time": ((int, type(None)), "an integer or null"),
    "cgroup": ((dict, type(None)), "an object or null"),
    "restarts": ((int,), "an integer"),
    "last_exit": ((dict, type(None)), "an object or null"),
    "definition": ((str,), "a string"),
    "started_at": ((int, float, type(None)), "a number or null"),
    "user_stopped": ((bool,), "true or false"),
    "frozen_by_user": ((bool,), "true or false"),
    "boot_id": ((str,), "a string"),
    "shutdown_stopped": ((bool,), "true or false"),
    "resources": ((dict, type(None)), "an object or null"),
    "error": ((str, type(None)), "a string or null"),
    "extra": ((dict,), "an object"),
}
_REQUIRED = ("name", "state", "since")
_FLOAT_FIELDS = ("since", "started_at")


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int subclass; `"pid": true` is not a pid
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def record_from_json(data: Any, where: str) -> UnitRecord:
    """Build a record from the `"unit"` object of a state file; raises
    StateStoreError naming the key and what was expected."""
    if not isinstance(data, dict):
        raise StateStoreError(where, f'"unit": expected an object, got {type(data).__name__}')
    unknown = sorted(set(data) - set(_FIELD_TYPES))
    if unknown:
        raise StateStoreError(where, f"unknown keys {unknown} in \"unit\" (format version {FORMAT_VERSION})")
    for key in _REQUIRED:
        if key not in data:
            raise StateStoreError(where, f'"unit.{key}" is missing')
    values: dict[str, Any] = {}
    for key, value in data.items():
        types, expected = _FIELD_TYPES[key]
        if not _type_ok(value, types):
            raise StateStoreError(where, f'"unit.{key}": expected {expected}, got {json.dumps(value)}')
        values[key] = float(value) if key in _FLOAT_FIELDS and value is not None else value
    return UnitRecord(**values)


def _check_name(name: str) -> None:
    # the name becomes a file name; unit names never contain these anyway
    if not name or "/" in name or "\0" in name or name.startswith("."):
        raise StateStoreError(name, "expected a unit name usable as a file name")


class StateStore:
    """The `state_dir/state/` folder of one supd instance."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.folder = self.state_dir / STATE_SUBDIR

    def path_for(self, name: str) -> Path:
        _check_name(name)
        return self.folder / f"{name}{RECORD_SUFFIX}"

    def _display(self, path: Path) -> str:
        return f"{STATE_SUBDIR}/{path.name}"

    def save(self, record: UnitRecord, *, durable: bool = True, sync_folder: bool = True) -> None:
        """Atomically replace the unit's state file with `record`. Not durable:
        no fsyncs, so the record survives supd being killed but not a power
        cut, which nothing it names (a process) survives either. A caller
        saving many records passes sync_folder=False and calls sync_folder()
        once after the last (one folder fsync makes every rename durable)."""
        target = self.path_for(record.name)
        # serialise first: a record that can't be written must not cost us the old file
        payload = json.dumps({"version": FORMAT_VERSION, "unit": record.to_json()}, indent=1, sort_keys=True)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
                f.write("\n")
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.replace(temp, target)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        if durable and sync_folder:
            self.sync_folder()

    def remove(self, name: str, *, sync_folder: bool = True) -> None:
        """Forget a unit; removing one that has no file is not an error."""
        try:
            self.path_for(name).unlink()
        except FileNotFoundError:
            return
        if sync_folder:
            self.sync_folder()

    def sync_folder(self) -> None:
        # makes the rename/unlink itself durable, not just the file's data
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load_all(self) -> tuple[dict[str, UnitRecord], list[str]]:
        """Every readable record by unit name, and the problems found on the way.

        Temporary files left by a crash in the middle of `save` are deleted
        (the previous record is still in place). Files that cannot be used
        are moved aside to `<file>.corrupt`.
        """
        records: dict[str, UnitRecord] = {}
        problems: list[str] = []
        if not self.folder.is_dir():
            return records, problems
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX):
                log.info("state_temp_file_removed", path=str(path), reason="interrupted save")
                path.unlink(missing_ok=True)
                continue
            if not path.name.endswith(RECORD_SUFFIX) or not path.is_file():
                continue
            try:
                record = self._read(path)
            except StateStoreError as error:
                problems.append(self._set_aside(path, str(error)))
                continue
            records[record.name] = record
        return records, problems

    def _read(self, path: Path) -> UnitRecord:
        where = self._display(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise StateStoreError(where, f"cannot read it ({error})") from error
        if not text.strip():
            raise StateStoreError(where, "file is empty (torn write?)")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise StateStoreError(where, f"not valid JSON ({error})") from error
        if not isinstance(document, dict):
            raise StateStoreError(where, f"expected a JSON object, got {type(document).__name__}")
        version = document.get("version")
        if not _type_ok(version, (int,)):
            raise StateStoreError(where, f'"version": expected an integer, got {json.dumps(version)}')
        if version > FORMAT_VERSION:
            raise StateStoreError(
                where,
                f"format version {version} is newer than this supd understands ({FORMAT_VERSION}); ignoring it",
            )
        if version < FORMAT_VERSION:
            raise StateStoreError(
                where,
                f"format version {version} is older than this supd understands ({FORMAT_VERSION}); ignoring it",
            )
        record = record_from_json(document.get("unit"), where)
        if record.name != path.name.removesuffix(RECORD_SUFFIX):
            raise StateStoreError(where, f'"unit.name" is {json.dumps(record.name)}, expected the file name\'s')
        return record

    def reject(self, name: str, problem: str) -> str:
        """Set a readable record aside as corrupt (it must not be acted on);
        returns the message naming the file and the problem."""
        path = self.path_for(name)
        return self._set_aside(path, f"{self._display(path)}: {problem}")

    def _set_aside(self, path: Path, problem: str) -> str:
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        try:
            os.replace(path, aside)
        except OSError as error:
            message = f"{problem}; could not move it aside ({error})"
        else:
            message = f"{problem}; moved to {self._display(aside)}"
        log.warning("state_file_unusable", problem=message)
        return message


def cgroup_paths_of(cgroup_ref: Mapping[str, Any] | None) -> list[str]:
    """The directories of a CgroupRef stored as JSON in a record (its `paths`:
    pairs of hierarchy key and directory, or a mapping of the same)."""
    if not cgroup_ref:
        return []
    paths = cgroup_ref.get("paths") or []
    if isinstance(paths, Mapping):
        return [str(p) for p in paths.values()]
    return [str(pair[1]) for pair in paths if isinstance(pair, (list, tuple)) and len(pair) == 2]
