"""supervisor.inotify's pure part: reading struct inotify_event records."""

from __future__ import annotations

import struct

from supervisor.inotify import IN_IGNORED, IN_MODIFY, parse_events


def test_parse_events_walks_names_of_any_length() -> None:
    named = struct.pack("iIII", 4, 0x100, 0, 16) + b"name".ljust(16, b"\0")
    data = struct.pack("iIII", 3, IN_MODIFY, 0, 0) + named + struct.pack("iIII", 5, IN_IGNORED, 0, 0)
    assert parse_events(data) == [(3, IN_MODIFY), (4, 0x100), (5, IN_IGNORED)]


def test_a_truncated_record_is_not_read() -> None:
    assert parse_events(struct.pack("iIII", 3, IN_MODIFY, 0, 0)[:10]) == []
