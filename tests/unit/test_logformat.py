"""The log record format (supervisor/logformat.py), the relay's writer of it
(runtime/shim.py, which cannot import it), --since/--until times, the journal
read-back, and the unit/config keys that pick a driver. Pure: no root, no I/O
beyond a temp folder."""

from __future__ import annotations

import calendar
import datetime
import importlib.util
import json
import re
from pathlib import Path

import hypothesis
import hypothesis.strategies
import pytest

from supervisor import logformat
from supervisor.api import logtail
from supervisor.daemon import logs as unit_logs

SHIM = Path(__file__).resolve().parents[2] / "supervisor" / "runtime" / "shim.py"
T0 = calendar.timegm((2026, 12, 2, 17, 0, 0, 0, 0, 0)) * 10**9 + 123456789


@pytest.fixture(scope="module")
def shim():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("supd_shim_for_test", SHIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_format_time_is_rfc3339_utc_nanoseconds() -> None:
    assert logformat.format_time(T0) == b"2026-12-02T17:00:00.123456789Z"
    assert logformat.format_time(0) == b"1970-01-01T00:00:00.000000000Z"


def test_record_round_trip() -> None:
    line = logformat.format_record(T0, "stderr", b"boom: x y")
    assert line == b"2026-12-02T17:00:00.123456789Z stderr F boom: x y\n"
    assert logformat.parse_record(line[:-1]) == logformat.Record(T0, "stderr", False, b"boom: x y")
    partial = logformat.format_record(T0, "stdout", b"", partial=True)
    assert logformat.parse_record(partial[:-1]) == logformat.Record(T0, "stdout", True, b"")


@pytest.mark.parametrize(
    "line",
    [b"plain old line", b"2026-12-02T17:00:00Z stdin F x", b"2026-13-02T17:00:00Z stdout F x", b""],
)
def test_a_line_that_is_not_a_record_is_stdout_text_without_time(line: bytes) -> None:
    assert logformat.parse_record(line) == logformat.Record(None, "stdout", False, line)


def test_the_relay_writes_what_the_parser_reads(shim) -> None:  # type: ignore[no-untyped-def]
    stamp = logformat.format_time(T0)
    data = b"one\ntwo words\n\nthree-without-newline"
    written = shim.cri_records(stamp, b"stderr", data)
    records = [logformat.parse_record(line) for line in written.split(b"\n")[:-1]]
    assert records == [
        logformat.Record(T0, "stderr", False, b"one"),
        logformat.Record(T0, "stderr", False, b"two words"),
        logformat.Record(T0, "stderr", False, b""),
        logformat.Record(T0, "stderr", True, b"three-without-newline"),
    ]
    assert shim.cri_records(stamp, b"stdout", b"x\n") == logformat.format_record(T0, "stdout", b"x")
    assert logformat.parse_time_ns(shim.rfc3339_now().decode()) > T0 - 10**18


def test_the_relays_journal_entries_carry_the_unit(shim) -> None:  # type: ignore[no-untyped-def]
    entries = list(shim.journal_entries(b"web", 1, b"a\nb"))
    assert entries == [
        b"PRIORITY=3\nSYSLOG_IDENTIFIER=web\nSUPD_UNIT=web\nSUPD_STREAM=stderr\nMESSAGE=a\n",
        b"PRIORITY=3\nSYSLOG_IDENTIFIER=web\nSUPD_UNIT=web\nSUPD_STREAM=stderr\nMESSAGE=b\n",
    ]
    long = list(shim.journal_entries(b"web", 0, b"x" * (shim.JOURNAL_LINE_MAX + 1)))
    assert len(long) == 2 and long[1].endswith(b"MESSAGE=x\n")


def test_renderer_joins_partial_records_per_stream() -> None:
    r = logformat.Renderer(timestamps=False)
    out = r.feed(logformat.Record(T0, "stdout", True, b"hel"))
    out += r.feed(logformat.Record(T0 + 1, "stderr", False, b"err"))
    out += r.feed(logformat.Record(T0 + 2, "stdout", False, b"lo"))
    assert out == b"err\nhello\n"
    stamped = logformat.Renderer(timestamps=True)
    assert stamped.feed(logformat.Record(T0, "stdout", False, b"x")) == b"2026-12-02T17:00:00.123456789Z x\n"
    assert stamped.feed(logformat.Record(None, "stdout", False, b"old")) == b"- old\n"


def test_a_run_marker_ends_the_runs_unfinished_lines() -> None:
    r = logformat.Renderer()
    assert r.feed(logformat.Record(T0, "stdout", True, b"prompt> ")) == b""
    assert r.feed(logformat.Record(T0, "supd", False, b"-- exited: exit 1 --")) == b"prompt> \n-- exited: exit 1 --\n"
    assert r.flush() == b""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-02T17:00:00.123456789Z", T0),
        ("2026-12-02T18:00:00.123456789+01:00", T0),
        ("2026-12-02t17:00:00.123456789z", T0),
        ("2026-12-02T17:00:00Z", T0 - 123456789),
        ("2026-12-02T17:00:00.5Z", T0 - 123456789 + 500_000_000),
        ("2026-12-02 17:00:00", T0 - 123456789),
        ("2026-12-02", T0 - 123456789 - 17 * 3600 * 10**9),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert logformat.parse_time_ns(text) == expected


@pytest.mark.parametrize(
    ("text", "back_ns"),
    [("10m", 600 * 10**9), ("1h", 3600 * 10**9), ("1.5h", 5400 * 10**9), ("30s", 30 * 10**9), ("250ms", 250 * 10**6), ("2d", 2 * 86400 * 10**9)],
)
def test_since_relative_is_back_from_now(text: str, back_ns: int) -> None:
    assert logformat.parse_since(text, T0) == T0 - back_ns


def test_since_absolute_and_unix() -> None:
    assert logformat.parse_since("2026-12-02T17:00:00.123456789Z", 0) == T0
    assert logformat.parse_since("1796230800", 0) == 1796230800 * 10**9


@pytest.mark.parametrize("text", ["yesterday", "-1h", "10x", "", "2026-12-02T25:00:00Z", "12"])
def test_since_rejects_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        logformat.parse_since(text, T0)


def test_in_window() -> None:
    rec = logformat.Record(T0, "stdout", False, b"x")
    assert logformat.in_window(rec, None, None)
    assert logformat.in_window(rec, T0, T0)
    assert not logformat.in_window(rec, T0 + 1, None)
    assert not logformat.in_window(rec, None, T0 - 1)
    untimed = logformat.Record(None, "stdout", False, b"x")
    assert logformat.in_window(untimed, None, None) and not logformat.in_window(untimed, 0, None)


def test_line_splitter_across_chunks() -> None:
    s = logformat.LineSplitter()
    assert s.feed(b"ab") == [] and s.feed(b"c\nd") == [b"abc"] and s.feed(b"\n\n") == [b"d", b""]
    assert s.rest() == b""


def test_window_lines_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    (tmp_path / "web.log.2").write_bytes(logformat.format_record(T0, "stdout", b"a"))
    (tmp_path / "web.log.1").write_bytes(logformat.format_record(T0 + 10, "stdout", b"b"))
    log.write_bytes(logformat.format_record(T0 + 20, "stderr", b"c") + logformat.format_record(T0 + 30, "stdout", b"d"))
    paths = logtail.rotated_paths(log)
    assert paths == [tmp_path / "web.log.2", tmp_path / "web.log.1", log]
    text, end = logtail.window_lines(paths, 100, T0 + 10, T0 + 20)
    assert [logformat.parse_record(x).text for x in text.splitlines()] == [b"b", b"c"]
    assert end == log.stat().st_size
    text, _ = logtail.window_lines(paths, 1, T0, None)
    assert text == logformat.format_record(T0 + 30, "stdout", b"d")


def test_journal_entries_become_records() -> None:
    entry = {"__REALTIME_TIMESTAMP": "1796230800123456", "MESSAGE": "hello", "SUPD_STREAM": "stderr"}
    assert logtail.journal_record(json.dumps(entry).encode()) == b"2026-12-02T17:00:00.123456000Z stderr F hello\n"
    raw = dict(entry, MESSAGE=[104, 105, 255], SUPD_STREAM="weird")
    assert logtail.journal_record(json.dumps(raw).encode()) == b"2026-12-02T17:00:00.123456000Z stdout F hi\xff\n"
    assert logtail.journal_record(b"not json") is None
    argv = logtail.journal_argv("web", 10, T0, T0 + 1, follow=True)
    assert argv[-1] == "SUPD_UNIT=web" and "--since=@1796230800" in argv and "--until=@1796230801" in argv
    assert "--follow" in argv and "json" in argv


def test_default_driver(tmp_path: Path) -> None:
    sock, sysd = tmp_path / "socket", tmp_path / "system"
    assert unit_logs.default_driver("auto", sock, sysd) == "file"
    sysd.mkdir()
    assert unit_logs.default_driver("auto", sock, sysd) == "file"  # systemd without its journal socket
    sock.touch()
    assert unit_logs.default_driver("auto", sock, sysd) == "journald"
    assert unit_logs.default_driver("file", sock, sysd) == "file"
    assert unit_logs.driver_of("journald", "file") == "journald" and unit_logs.driver_of(None, "file") == "file"


def test_markers() -> None:
    assert logformat.marker(T0, unit_logs.started_text(123)) == b"2026-12-02T17:00:00.123456789Z supd F -- started pid 123 --\n"
    assert unit_logs.exited_text("oom-kill") == "exited: oom-kill"
    assert unit_logs.journal_entry("web", "-- exited: exit 1 --") == (
        b"PRIORITY=5\nSYSLOG_IDENTIFIER=web\nSUPD_UNIT=web\nSUPD_STREAM=supd\nMESSAGE=-- exited: exit 1 --\n"
    )


def test_marker_on_a_journal_that_is_not_there_is_logged_not_raised(tmp_path: Path) -> None:
    unit_logs.write_marker(tmp_path, "web", "journald", "started pid 1", journal_socket=tmp_path / "none")
    unit_logs.write_marker(tmp_path, "web", "file", "started pid 1")
    assert logformat.parse_record(unit_logs.log_path(tmp_path, "web").read_bytes()[:-1]).text == b"-- started pid 1 --"



def test_log_driver_keys(tmp_path: Path) -> None:
    import tomllib

    from supervisor.daemon.config import ConfigError, load_config, load_file
    from supervisor.units.parse import UnitFileError, parse_unit

    assert load_config(["--log-driver", "journald", "--config", "/dev/null"]).log_driver == "journald"
    assert load_config(["--config", "/dev/null"]).log_driver == "auto"
    bad = tmp_path / "supd.toml"
    bad.write_text('log_driver = "syslog"\n')
    with pytest.raises(ConfigError, match="log_driver: expected one of auto, file, journald"):
        load_file(bad)
    unit = parse_unit("web", tomllib.loads('[exec]\ncommand = ["/bin/true"]\nlog_driver = "journald"\n'), Path("u/web.toml"))
    assert unit.exec.log_driver == "journald"
    with pytest.raises(UnitFileError) as info:
        parse_unit("web", tomllib.loads('[exec]\ncommand = ["/bin/true"]\nlog_driver = "syslog"\n'), Path("u/web.toml"))
    assert str(info.value) == 'u/web.toml: [exec].log_driver: expected one of "file", "journald", got "syslog"'


@hypothesis.given(hypothesis.strategies.dates(), hypothesis.strategies.integers(0, 86399))
def test_times_convert_as_calendar_timegm_does(day: datetime.date, second: int) -> None:
    hour, rest = divmod(second, 3600)
    text = f"{day.isoformat()}T{hour:02d}:{rest // 60:02d}:{rest % 60:02d}Z"
    expected = calendar.timegm((day.year, day.month, day.day, hour, rest // 60, rest % 60, 0, 0, 0))
    assert logformat.parse_time_ns(text) == expected * 10**9


@hypothesis.given(hypothesis.strategies.integers(0, 2**63 // 4))
def test_a_written_time_reads_back_to_the_nanosecond(time_ns: int) -> None:
    record = logformat.parse_record(logformat.format_record(time_ns, "stdout", b"x")[:-1])
    assert record.time_ns == time_ns


@hypothesis.given(
    hypothesis.strategies.integers(0, 2**63 // 4),
    hypothesis.strategies.sampled_from(["stdout", "stderr", "supd", "stdin", "std"]),
    hypothesis.strategies.sampled_from(["F", "P", "X", ""]),
    hypothesis.strategies.binary(max_size=20),
    hypothesis.strategies.integers(0, 40),
    hypothesis.strategies.binary(min_size=1, max_size=1),
)
def test_the_fast_reading_agrees_with_the_pattern(
    time_ns: int, stream: str, flag: str, text: bytes, at: int, byte: bytes
) -> None:
    line = logformat.format_time(time_ns) + f" {stream} {flag} ".encode() + text
    damaged = line[:at] + byte + line[at + 1 :]  # one byte changed anywhere in the head
    for candidate in (line, damaged):
        m = re.match(logformat._RECORD, candidate)
        expected = logformat.Record(None, "stdout", False, candidate)  # not a record, or a date like month 13
        if m is not None:
            try:
                when = logformat.parse_time_ns(m.group(1).decode())
                expected = logformat.Record(when, m.group(2).decode(), m.group(3) == b"P", candidate[m.end():])
            except ValueError:
                pass
        assert logformat.parse_record(candidate) == expected
