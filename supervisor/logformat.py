"""The unit log line format, its parsing, and `--since`/`--until` times. Pure.

A unit's log file holds one record per line, in CRI's (the Kubernetes
container runtime interface's) log format, so tools that know it read ours:

    2026-12-02T17:00:00.123456789Z stdout F GET / 200
    2026-12-02T17:00:00.123460000Z stderr P a line written without its newline
    2026-12-02T17:00:01.000000000Z supd F -- exited: exit 1 --

time (RFC 3339, UTC, nanoseconds), stream (`stdout`, `stderr`, or `supd` for
the run markers supd writes), tag (`F` a full line, `P` part of a line the
process has not ended yet; the rest follows in later records of the stream),
text. The relay (runtime/shim.py `run_log_relay`, which cannot import this
module) writes the same format; tests/unit/test_logformat.py checks they agree.

A line that is not a record (a file written before supd timestamped lines) is
read as stdout text with no time. Stdlib only and cheap to import: supctl uses it.
"""

from __future__ import annotations

import re
import time
from collections import namedtuple

STREAMS = ("stdout", "stderr", "supd")
FULL, PARTIAL = "F", "P"

_RECORD = rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) (stdout|stderr|supd) ([FP]) "  # compiled on first use
# --since/--until's patterns, compiled on first use: supctl's `status` and
# `logs` parse records (the fixed layout of _RECORD, read by slicing) on every
# call, times given by a person rarely.
_RFC3339 = r"^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?)?(Z|[+-]\d\d:\d\d)?$"
_RELATIVE = r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)$"
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}


# A named tuple, not the frozen dataclass a model would be: supctl imports
# this module for every `status` and `logs`, and importing dataclasses costs
# about 20 ms of its start-up (inspect, ast), more than all the rest it needs.
class Record(namedtuple("Record", ("time_ns", "stream", "partial", "text"))):
    """One line of a unit's log. time_ns: int, or None for a line without a
    time (an older log); stream: "stdout", "stderr" or "supd"; partial: bool,
    the line had no newline yet; text: bytes, without the newline."""

    __slots__ = ()


def format_time(time_ns: int) -> bytes:
    seconds, nanos = divmod(time_ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ" % nanos


def format_record(time_ns: int, stream: str, text: bytes, partial: bool = False) -> bytes:
    """One record line; `text` must not contain a newline."""
    return b"%s %s %s %s\n" % (format_time(time_ns), stream.encode(), b"P" if partial else b"F", text)


def marker(time_ns: int, text: str) -> bytes:
    """A run marker line as supd writes it: `-- started pid 123 --`."""
    return format_record(time_ns, "supd", f"-- {text} --".encode())


# calendar.timegm and monthrange by arithmetic: importing calendar (locale,
# datetime) costs supctl about a millisecond of start-up on every `status`.
def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    return 29 if month == 2 and _is_leap(year) else (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date of the proleptic Gregorian calendar."""
    years = year - 1
    before_year = years * 365 + years // 4 - years // 100 + years // 400  # days from 0001-01-01
    before_month = sum(_days_in_month(year, m) for m in range(1, month))
    return before_year + before_month + day - 1 - 719162  # 719162: days from 0001-01-01 to 1970-01-01


def parse_time_ns(text: str) -> int:
    """RFC 3339 (a date alone, or without an offset, is UTC) to epoch ns. ValueError if not."""
    m = re.match(_RFC3339, text.strip(), re.IGNORECASE)
    if m is None:
        raise ValueError(text)
    year, month, day, hour, minute, second, frac, offset = m.groups()
    fields = (int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    if not (
        1 <= fields[1] <= 12
        and 1 <= fields[2] <= _days_in_month(fields[0], fields[1])
        and fields[3] < 24 and fields[4] < 60 and fields[5] <= 60
    ):  # fmt: skip
        raise ValueError(text)
    seconds = _days_since_epoch(*fields[:3]) * 86400 + fields[3] * 3600 + fields[4] * 60 + fields[5]
    if offset and offset.upper() != "Z":
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return seconds * 10**9 + int((frac or "0").ljust(9, "0"))


def parse_since(text: str, now_ns: int) -> int:
    """`--since`/`--until`: RFC 3339, a Unix time in seconds, or a duration
    back from now like docker's ("10m", "1h", "1.5h", "30s"). ValueError if none."""
    value = text.strip()
    m = re.match(_RELATIVE, value)
    if m is not None:
        return now_ns - int(float(m.group(1)) * _UNIT_NS[m.group(2)])
    if re.fullmatch(r"\d+(?:\.\d+)?", value) and len(value.split(".")[0]) > 8:
        return int(float(value) * 10**9)
    try:
        return parse_time_ns(value)
    except ValueError:
        raise ValueError(
            f"{text!r}: expected an RFC 3339 time (2026-12-02T17:00:00Z), a Unix time, "
            'or a duration back from now ("10m", "1h", "30s")'
        ) from None


def _record_time_ns(stamp: bytes) -> int:
    """A record's time. supd writes one layout, 2026-12-02T17:00:00.123456789Z,
    read here by position; any other that _RECORD lets through goes the long way."""
    if len(stamp) == 30 and stamp[19:20] == b"." and stamp[29:30] == b"Z":
        year, month, day = int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10])
        hour, minute, second = int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19])
        if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month) and hour < 24 and minute < 60 and second <= 60):
            raise ValueError(stamp)
        days = _days_since_epoch(year, month, day)
        return ((days * 24 + hour) * 60 + minute) * 60 * 10**9 + second * 10**9 + int(stamp[20:29])
    return parse_time_ns(stamp.decode())


_STREAMS = {b"stdout": "stdout", b"stderr": "stderr", b"supd": "supd"}
_DIGITS = frozenset(b"0123456789")
_STAMP_SEPARATORS = ((4, b"-"), (7, b"-"), (10, b"T"), (13, b":"), (16, b":"), (19, b"."), (29, b"Z"), (30, b" "))


def parse_record(line: bytes) -> Record:
    """One line (without its newline) of a log file."""
    fast = _parse_written_record(line)
    if fast is not None:
        return fast
    m = re.match(_RECORD, line)
    if m is None:
        return Record(None, "stdout", False, line)
    try:
        when: int | None = _record_time_ns(m.group(1))
    except ValueError:  # e.g. month 13: not ours after all
        return Record(None, "stdout", False, line)
    return Record(when, m.group(2).decode(), m.group(3) == b"P", line[m.end() :])


def _parse_written_record(line: bytes) -> Record | None:
    """The layout supd writes, by position: `STAMP STREAM F|P TEXT` with a
    30-byte nanosecond UTC stamp. None for anything else (parse_record's
    pattern then decides), so both ways read a line the same."""
    if len(line) < 31 or any(line[i : i + 1] != sep for i, sep in _STAMP_SEPARATORS):
        return None
    if not all(line[i] in _DIGITS for i in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, *range(20, 29))):
        return None
    stream, _sp, rest = line[31:].partition(b" ")
    flag, sep, text = rest.partition(b" ")
    if stream not in _STREAMS or flag not in (b"F", b"P") or not sep:
        return None
    try:
        when = _record_time_ns(line[:30])
    except ValueError:
        return Record(None, "stdout", False, line)
    return Record(when, _STREAMS[stream], flag == b"P", text)


def in_window(record: Record, since_ns: int | None, until_ns: int | None) -> bool:
    """A record without a time is shown only when no window is asked for."""
    if since_ns is None and until_ns is None:
        return True
    if record.time_ns is None:
        return False
    return (since_ns is None or record.time_ns >= since_ns) and (until_ns is None or record.time_ns <= until_ns)


class Renderer:
    """Records to what `supctl logs` prints: the text of each line, or with
    `timestamps` its time first (docker's `-t`). P records are joined with
    the rest of their line (per stream) before it is printed, so a line the
    relay wrote in pieces prints once, with its first piece's time."""

    def __init__(self, timestamps: bool = False) -> None:
        self.timestamps = timestamps
        self._pending: dict[str, tuple[int | None, list[bytes]]] = {}

    def feed(self, record: Record) -> bytes:
        if record.stream == "supd" and self._pending:
            # a run marker: the run's unfinished lines are as finished as they will get
            return self.flush() + self.feed(record)
        pending = self._pending.get(record.stream)
        if record.partial:
            if pending is None:
                self._pending[record.stream] = (record.time_ns, [record.text])
            else:
                pending[1].append(record.text)
            return b""
        if pending is not None:
            del self._pending[record.stream]
            return self._line(pending[0], b"".join(pending[1]) + record.text)
        return self._line(record.time_ns, record.text)

    def flush(self) -> bytes:
        """Unfinished lines, as they are (the stream ended mid-line)."""
        out = b"".join(self._line(t, b"".join(parts)) for t, parts in self._pending.values())
        self._pending.clear()
        return out

    def _line(self, time_ns: int | None, text: bytes) -> bytes:
        if not self.timestamps:
            return text + b"\n"
        stamp = format_time(time_ns) if time_ns is not None else b"-"
        return stamp + b" " + text + b"\n"


class LineSplitter:
    """Bytes that arrive in arbitrary chunks, to whole lines."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        return lines

    def rest(self) -> bytes:
        rest, self._rest = self._rest, b""
        return rest
