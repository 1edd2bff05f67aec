"""A unit -> the seccomp program its processes get, compiled once.

Compiling docker's profile takes ~20 ms; a restart loop or a health check
every second must not pay that each time, so programs are cached by
(profile, capability set). A profile file is identified by its path, inode,
size and mtime: an edited file is read again, an unchanged one is not even
opened.
"""

from __future__ import annotations

import os
import threading

from supervisor.seccomp import libseccomp
from supervisor.seccomp.compile import check_names, compile_filter
from supervisor.seccomp.profile import DEFAULT, Profile, ProfileError, parse_json
from supervisor.units.capabilities import ALL_CAPS
from supervisor.units.model import Unit

KEY = "[exec].seccomp"
MAX_PROFILE_SIZE = 1 << 20


class SeccompError(ValueError):
    """Why a unit's filter can't be made; the message names the file and key
    (a ValueError: the supervisor reports it as a failed start)."""


def read_profile(path: str) -> Profile:
    """Read and parse a docker/OCI profile file; ProfileError on any problem."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_SIZE + 1)
    except OSError as exc:
        raise ProfileError(f"{path}: {exc.strerror}") from None
    if len(data) > MAX_PROFILE_SIZE:
        raise ProfileError(f"{path}: larger than {MAX_PROFILE_SIZE} bytes")
    try:
        profile = parse_json(data)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}", exc.syscall) from None
    return profile


def validate_profile(path: str) -> None:
    """Load-time check of a unit's profile file: parses, names known syscalls.
    Without libseccomp only the parse is checked (the start then says what
    to install)."""
    profile = read_profile(path)
    try:
        check_names(profile)
    except libseccomp.SeccompUnavailable:
        return
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}", exc.syscall) from None


class FilterCache:
    def __init__(self) -> None:
        self._programs: dict[tuple[object, frozenset[int]], bytes] = {}
        self._profiles: dict[tuple[str, int, int, int], Profile] = {}
        # health checks compile from worker threads too
        self._lock = threading.Lock()

    def for_unit(self, unit: Unit) -> bytes | None:
        """The program for `unit` (None: unconfined). SeccompError otherwise."""
        mode = unit.seccomp
        if mode == "unconfined":
            return None
        caps = unit.caps
        caps = ALL_CAPS if caps is None else caps  # a plain unit keeps all of root's
        try:
            with self._lock:
                if mode == "default":
                    key: object = "default"
                    profile = DEFAULT
                else:
                    key, profile = self._profile(mode)
                program = self._programs.get((key, caps))
                if program is None:
                    try:
                        program = compile_filter(profile, caps)
                    except ProfileError as exc:
                        if mode == "default":
                            raise
                        raise ProfileError(f"{mode}: {exc}", exc.syscall) from None
                    self._programs[(key, caps)] = program
            return program
        except libseccomp.SeccompUnavailable as exc:
            raise SeccompError(f"{unit.file}: {KEY} = {mode!r}: {exc}") from None
        except (ProfileError, libseccomp.LibseccompError) as exc:
            raise SeccompError(f"{unit.file}: {KEY}: {exc}") from None

    def _profile(self, path: str) -> tuple[tuple[str, int, int, int], Profile]:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ProfileError(f"{path}: {exc.strerror}") from None
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        profile = self._profiles.get(key)
        if profile is None:
            profile = read_profile(path)
            # an edited file: forget what its old version compiled to
            self._profiles = {k: v for k, v in self._profiles.items() if k[0] != path}
            self._programs = {
                k: v for k, v in self._programs.items() if not (isinstance(k[0], tuple) and k[0][0] == path)
            }
            self._profiles[key] = profile
        return key, profile


_cache = FilterCache()


def filter_for(unit: Unit) -> bytes | None:
    """The daemon's shared cache."""
    return _cache.for_unit(unit)
