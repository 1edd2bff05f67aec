"""Scalar value parsers of unit files: each accepts what DESIGN.md promises
and refuses everything else with a message saying what was expected."""

from __future__ import annotations

import signal

import pytest

from supervisor.units import values


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1m 30s", 90.0),
        ("250us", 0.00025),
        ("2 min", 120.0),
        ("1.5s", 1.5),
        ("1d", 86400.0),
        ("0", 0.0),
        ("0s", 0.0),
        (" 10s ", 10.0),
        ("100msec", 0.1),
        ("2hours", 7200.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert values.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["10", "", " ", "s", "10x", "-5s", "10s-", "1e3s", "ms10", "10 s s", "5M", "11y", 12, 0, 1.5, True, None, ["10s"],
     "9" * 20 + "s", "100000w"],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="a duration like"):
        values.parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("100", 100),
        ("100B", 100),
        ("512K", 512 * 1024),
        ("64M", 64 * 1024**2),
        ("64MB", 64 * 1024**2),
        ("64MiB", 64 * 1024**2),
        ("1G", 1024**3),
        ("1g", 1024**3),
        ("2T", 2 * 1024**4),
        ("1.5K", 1536),
    ],
)
def test_parse_size_accepts(value: object, size: int) -> None:
    assert values.parse_size(value) == size


@pytest.mark.parametrize("value", [-1, "-1", "12Q", "", "M", "64 MX", True, 1.5, None, "1e3", "9" * 30, 2**64])
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="a size like"):
        values.parse_size(value)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("SIGTERM", signal.SIGTERM),
        ("TERM", signal.SIGTERM),
        ("sigterm", signal.SIGTERM),
        ("SIGKILL", signal.SIGKILL),
        ("hup", signal.SIGHUP),
        (9, 9),
        (1, 1),
        (64, 64),
        ("SIGRTMIN+3", signal.SIGRTMIN + 3),
    ],
)
def test_parse_signal_accepts(value: object, number: int) -> None:
    assert values.parse_signal(value) == int(number)


@pytest.mark.parametrize("value", ["SIGFOO", "", "SIG_DFL", "SIG_IGN", 0, 65, -9, True, 9.0, None, "SIGRTMIN+99"])
def test_parse_signal_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="a signal like"):
        values.parse_signal(value)


def test_signal_name() -> None:
    assert values.signal_name(9) == "SIGKILL"
    assert values.signal_name(int(signal.SIGRTMIN) + 2) == "SIGRTMIN+2"
    assert values.signal_name(200) == "signal 200"


@pytest.mark.parametrize("name", ["web", "a", "0", "db-1", "my_app.v2", "a" * 64, "x.y"])
def test_valid_unit_names(name: str) -> None:
    assert values.valid_unit_name(name)


@pytest.mark.parametrize(
    "name", ["", "Web", "-web", ".web", "_web", "a" * 65, "a..b", "..", "a/b", "web.toml/", "a b", "é", 5, None]
)
def test_invalid_unit_names(name: object) -> None:
    assert not values.valid_unit_name(name)


@pytest.mark.parametrize("name", ["web", "batch-low", "a_b", "a-b-c", "0"])
def test_valid_slice_names(name: str) -> None:
    assert values.valid_slice_name(name)


@pytest.mark.parametrize("name", ["", "-a", "a-", "a--b", "Web", "a.b", "a b", "a" * 65, 1])
def test_invalid_slice_names(name: object) -> None:
    assert not values.valid_slice_name(name)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("0", "0"), ("0-1,3", "0-1,3"), ("3,0,1", "0-1,3"), ("0,1,2", "0-2"), ("1-2,2-4", "1-4"), (" 0 , 2 ", "0,2")],
)
def test_parse_cpuset(text: str, canonical: str) -> None:
    assert values.parse_cpuset(text) == canonical


@pytest.mark.parametrize("value", ["9-2", "", "a", "0-", "-1", "0,,1", "1-2-3", "99999", 0, None, "0-5000"])
def test_parse_cpuset_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="a CPU list like"):
        values.parse_cpuset(value)


@pytest.mark.parametrize(("text", "fraction"), [("50%", 0.5), ("200%", 2.0), ("12.5%", 0.125), ("100 %", 1.0)])
def test_parse_percent(text: str, fraction: float) -> None:
    assert values.parse_percent(text) == pytest.approx(fraction)


@pytest.mark.parametrize("value", ["0%", "50", "%", "-5%", "abc%", 50, 0.5, None])
def test_parse_percent_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="a percentage"):
        values.parse_percent(value)


@pytest.mark.parametrize("name", ["web", "web-1", "a.example.com", "A1", "x" * 63])
def test_valid_hostnames(name: str) -> None:
    assert values.valid_hostname(name)


@pytest.mark.parametrize("name", ["", "-web", "web-", "a..b", "a_b", "x" * 65, "a b", ".a", 3])
def test_invalid_hostnames(name: object) -> None:
    assert not values.valid_hostname(name)


@pytest.mark.parametrize("value", ["nobody", "www-data", "_apt", "0", "1000", "1000:1000", "4294967294:0"])
def test_valid_users(value: str) -> None:
    assert values.valid_user(value)


@pytest.mark.parametrize("value", ["", "Root", "a:b", "1000:", ":1000", "4294967295", "-1", "a b", 1000, None])
def test_invalid_users(value: object) -> None:
    assert not values.valid_user(value)


@pytest.mark.parametrize(("name", "ok"), [("TZ", True), ("_X1", True), ("1X", False), ("A-B", False), ("", False)])
def test_env_names(name: str, ok: bool) -> None:
    assert values.valid_env_name(name) is ok
