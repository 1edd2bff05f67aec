"""Parsers for the scalar values of unit files: durations, sizes, signals,
names, CPU lists and percentages.

Each parser takes the raw TOML value and returns the model's type, or raises
`ValueError` whose message is what was expected ("a duration like ..."). The
unit file parser turns that into a `UnitFileError` with the file and key path.
Pure: no I/O.
"""

from __future__ import annotations

import math
import re
import signal

# Time units as systemd.time(7) spells them (minus months/years, whose "M"/"m"
# clash is a trap), in seconds.
_DURATION_UNITS: dict[str, float] = {
    "us": 1e-6, "usec": 1e-6, "μs": 1e-6, "µs": 1e-6,
    "ms": 1e-3, "msec": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}  # fmt: skip

# Digits are bounded so that int()/float() never see a pathological string
# (CPython refuses int strings over 4300 digits with its own ValueError).
_NUMBER = r"\d{1,15}(?:\.\d{1,9})?"
_DURATION_PART_RE = re.compile(rf"\s*({_NUMBER})\s*([a-zA-Zμµ]+)\s*")
DURATION_EXPECTED = 'a duration like "500ms" or "10s"'
# Ten years: longer is certainly a typo, and keeps float arithmetic exact enough.
MAX_DURATION = 10 * 365 * 86400.0

_SIZE_RE = re.compile(rf"\s*({_NUMBER})\s*([KMGT]?)(i?B)?\s*", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
SIZE_EXPECTED = 'a size like "64M", "1G", "512K" or a number of bytes'
MAX_SIZE = 2**63 - 1  # what the kernel's counters hold

SIGNAL_EXPECTED = 'a signal like "SIGTERM", "TERM" or a number 1..64'
_MAX_SIGNAL = 64

UNIT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
UNIT_NAME_EXPECTED = 'a unit name matching [a-z0-9][a-z0-9_.-]{0,63} without ".."'

# A slice name becomes supd-<slice>.slice; a dash means nesting in systemd, so
# dashes only separate non-empty parts.
SLICE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_]*(?:-[a-z0-9_]+)*")
SLICE_NAME_EXPECTED = 'a slice name like "web" or "batch-low" (a-z, 0-9, _; single inner dashes)'
_MAX_SLICE_NAME = 64

_CPU_RANGE_RE = re.compile(r"(\d{1,4})(?:-(\d{1,4}))?")
CPUSET_EXPECTED = 'a CPU list like "0-1,3"'
_MAX_CPU = 4095  # the kernel's NR_CPUS upper bound on common configs

_PERCENT_RE = re.compile(rf"\s*({_NUMBER})\s*%\s*")
PERCENT_EXPECTED = 'a percentage of one CPU above 0 like "50%" or "200%"'

# RFC 1123 labels; the kernel's UTS name holds 64 bytes.
_HOSTNAME_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
HOSTNAME_EXPECTED = "a hostname of at most 64 characters (letters, digits, inner dashes, dots between labels)"
_MAX_HOSTNAME = 64

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# useradd's default NAME_REGEX plus the trailing "$" of machine accounts.
_USER_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}\$?")
_UID_GID_RE = re.compile(r"(\d{1,10})(?::(\d{1,10}))?")
USER_EXPECTED = 'a user name like "nobody" or "uid[:gid]" like "1000:1000"'
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to setresuid


def _is_bool(value: object) -> bool:
    # bool is a subclass of int; TOML true must never pass as 1.
    return isinstance(value, bool)


def parse_duration(value: object) -> float:
    """Seconds from a systemd-style time span: "500ms", "10s", "1m30s", "250us".

    A unit is required (a bare "30" is ambiguous), except for "0".
    """
    if not isinstance(value, str):
        raise ValueError(DURATION_EXPECTED)
    text = value.strip()
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(DURATION_EXPECTED)
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART_RE.match(text, pos)
        if match is None or match.group(2) not in _DURATION_UNITS:
            raise ValueError(DURATION_EXPECTED)
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not math.isfinite(total) or total > MAX_DURATION:
        raise ValueError(f"{DURATION_EXPECTED} of at most 10 years")
    return total


def parse_size(value: object) -> int:
    """Bytes from an int or a string with an optional K/M/G/T suffix (base 1024)."""
    if _is_bool(value):
        raise ValueError(SIZE_EXPECTED)
    if isinstance(value, int):
        if value < 0 or value > MAX_SIZE:
            raise ValueError(f"{SIZE_EXPECTED}, not negative")
        return value
    if not isinstance(value, str):
        raise ValueError(SIZE_EXPECTED)
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise ValueError(SIZE_EXPECTED)
    number, suffix, _bytes = match.groups()
    factor = _SIZE_FACTORS[suffix.upper()]
    if "." in number:
        size = int(float(number) * factor)
    else:
        size = int(number) * factor
    if size > MAX_SIZE:
        raise ValueError(f"{SIZE_EXPECTED} below 8 EiB")
    return size


def parse_signal(value: object) -> int:
    """A signal number from "SIGTERM", "TERM", "sigterm", "SIGRTMIN+3" or 1..64."""
    if _is_bool(value):
        raise ValueError(SIGNAL_EXPECTED)
    if isinstance(value, int):
        if 1 <= value <= _MAX_SIGNAL:
            return value
        raise ValueError(SIGNAL_EXPECTED)
    if not isinstance(value, str):
        raise ValueError(SIGNAL_EXPECTED)
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    rt = re.fullmatch(r"SIGRTMIN\+(\d{1,2})", name)
    if rt is not None:
        number = int(signal.SIGRTMIN) + int(rt.group(1))
        if number <= int(signal.SIGRTMAX):
            return number
        raise ValueError(SIGNAL_EXPECTED)
    # Only real names: Signals also holds aliases like SIG_DFL that are not signals.
    if name.startswith("SIG_") or name not in signal.Signals.__members__:
        raise ValueError(SIGNAL_EXPECTED)
    return int(signal.Signals[name])


def signal_name(number: int) -> str:
    """"SIGKILL" for 9; "SIGRTMIN+3" for real-time signals; "signal 77" otherwise."""
    try:
        return signal.Signals(number).name
    except ValueError:
        if int(signal.SIGRTMIN) <= number <= int(signal.SIGRTMAX):
            return f"SIGRTMIN+{number - int(signal.SIGRTMIN)}"
        return f"signal {number}"


def valid_unit_name(name: object) -> bool:
    return isinstance(name, str) and UNIT_NAME_RE.fullmatch(name) is not None and ".." not in name


def valid_slice_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and len(name) <= _MAX_SLICE_NAME
        and SLICE_NAME_RE.fullmatch(name) is not None
    )


def valid_hostname(name: object) -> bool:
    if not isinstance(name, str) or not name or len(name) > _MAX_HOSTNAME:
        return False
    return all(_HOSTNAME_LABEL_RE.fullmatch(label) for label in name.split("."))


def valid_env_name(name: object) -> bool:
    return isinstance(name, str) and ENV_NAME_RE.fullmatch(name) is not None


def valid_user(value: object) -> bool:
    """A user name, or "uid" / "uid:gid" with ids below (uid_t)-1."""
    if not isinstance(value, str):
        return False
    if _USER_NAME_RE.fullmatch(value):
        return True
    match = _UID_GID_RE.fullmatch(value)
    if match is None:
        return False
    return all(int(part) <= _MAX_ID for part in match.groups() if part is not None)


def parse_cpuset(value: object) -> str:
    """The canonical form of a CPU list: sorted, merged ranges ("3,0,1" -> "0-1,3")."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(CPUSET_EXPECTED)
    cpus: set[int] = set()
    for part in value.split(","):
        match = _CPU_RANGE_RE.fullmatch(part.strip())
        if match is None:
            raise ValueError(CPUSET_EXPECTED)
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first or last > _MAX_CPU:
            raise ValueError(f"{CPUSET_EXPECTED} with ascending ranges of CPUs 0..{_MAX_CPU}")
        cpus.update(range(first, last + 1))
    return format_cpuset(cpus)


def format_cpuset(cpus: set[int] | frozenset[int]) -> str:
    ranges: list[str] = []
    ordered = sorted(cpus)
    start = prev = ordered[0]
    for cpu in ordered[1:] + [-2]:
        if cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    return ",".join(ranges)


def parse_percent(value: object) -> float:
    """A fraction from a percentage: "50%" -> 0.5, "200%" -> 2.0; must be above 0."""
    if not isinstance(value, str):
        raise ValueError(PERCENT_EXPECTED)
    match = _PERCENT_RE.fullmatch(value)
    if match is None:
        raise ValueError(PERCENT_EXPECTED)
    fraction = float(match.group(1)) / 100.0
    if fraction <= 0:
        raise ValueError(PERCENT_EXPECTED)
    return fraction
