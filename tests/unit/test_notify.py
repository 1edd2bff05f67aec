"""sd_notify client, tested against a real AF_UNIX datagram socket that stands
in for systemd's notify socket (receiving on it is exactly what systemd does)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor.daemon.notify import (
    Notifier,
    monotonic_usec,
    parse_notify_address,
    parse_watchdog_usec,
)


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(5)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def path_systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(str(tmp_path / "notify"))
    yield fake
    fake.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd("\0supdtest-notify-" + uuid.uuid4().hex)
    yield fake
    fake.close()


def env_for(address: str, **extra: str) -> dict[str, str]:
    value = "@" + address[1:] if address.startswith("\0") else address
    return {"NOTIFY_SOCKET": value, **extra}


def test_no_notify_socket_means_disabled_and_silent() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_ready_status_stopping_over_a_path_socket(path_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env(env_for(path_systemd.address))
    assert notifier.enabled
    assert notifier.ready(status="3 units running")
    assert path_systemd.receive() == {"READY": "1", "STATUS": "3 units running"}
    assert notifier.status("reloading units")
    assert path_systemd.receive() == {"STATUS": "reloading units"}
    assert notifier.stopping()
    assert path_systemd.receive() == {"STOPPING": "1"}
    notifier.close()


def test_abstract_socket_address(abstract_systemd: FakeSystemd) -> None:
    env = env_for(abstract_systemd.address)
    assert env["NOTIFY_SOCKET"].startswith("@")
    notifier = Notifier.from_env(env)
    assert notifier.ready()
    assert abstract_systemd.receive() == {"READY": "1"}
    notifier.close()


def test_reloading_carries_a_current_monotonic_timestamp(path_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env(env_for(path_systemd.address))
    before = monotonic_usec()
    assert notifier.reloading()
    after = monotonic_usec()
    fields = path_systemd.receive()
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    notifier.close()


def test_status_newlines_cannot_inject_fields(path_systemd: FakeSystemd) -> None:
    notifier = Notifier.from_env(env_for(path_systemd.address))
    notifier.status("line one\nREADY=1")
    assert path_systemd.receive() == {"STATUS": "line one READY=1"}
    notifier.close()


def test_watchdog_for_our_pid(path_systemd: FakeSystemd) -> None:
    env = env_for(path_systemd.address, WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid()))
    notifier = Notifier.from_env(env)
    assert notifier.watchdog_interval() == pytest.approx(15.0)
    assert notifier.watchdog()
    assert path_systemd.receive() == {"WATCHDOG": "1"}
    notifier.close()


def test_watchdog_meant_for_another_pid_is_ignored(path_systemd: FakeSystemd) -> None:
    env = env_for(path_systemd.address, WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid() + 1))
    notifier = Notifier.from_env(env)
    assert notifier.watchdog_interval() is None
    assert notifier.watchdog() is False
    assert path_systemd.nothing_pending()
    notifier.close()


def test_from_env_unsets_the_variables_so_units_do_not_inherit_them(
    path_systemd: FakeSystemd,
) -> None:
    env = env_for(path_systemd.address, WATCHDOG_USEC="1000000", WATCHDOG_PID=str(os.getpid()))
    env["PATH"] = "/usr/bin"
    Notifier.from_env(env).close()
    assert env == {"PATH": "/usr/bin"}
    kept = env_for(path_systemd.address)
    Notifier.from_env(kept, unset=False).close()
    assert "NOTIFY_SOCKET" in kept


def test_vanished_socket_warns_once_and_never_raises(tmp_path: Path) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    with capture_logs() as logs:
        assert notifier.ready() is False
        assert notifier.status("still here") is False
    warnings = [entry for entry in logs if entry["event"] == "notify_send_failed"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    notifier.close()


def test_full_receive_queue_does_not_block(path_systemd: FakeSystemd) -> None:
    # nobody reads: the kernel queue fills up and sendto would block a
    # blocking socket forever; ours must return within the deadline
    notifier = Notifier.from_env(env_for(path_systemd.address))
    deadline = time.monotonic() + 30
    with capture_logs():
        while notifier.status("x" * 1024):
            assert time.monotonic() < deadline, "receive queue never filled"
    assert time.monotonic() < deadline
    notifier.close()


def test_relative_notify_socket_is_refused() -> None:
    with capture_logs() as logs:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "relative/notify"})
    assert not notifier.enabled
    assert [entry["event"] for entry in logs] == ["notify_socket_unusable"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("@abc", "\0abc"), ("/run/systemd/notify", "/run/systemd/notify"), ("@", None), ("x", None)],
)
def test_parse_notify_address(value: str, expected: str | None) -> None:
    assert parse_notify_address(value) == expected


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("2000000", None, 2_000_000),
        ("2000000", "42", 2_000_000),
        ("2000000", "43", None),
        ("0", None, None),
        ("-5", None, None),
        ("abc", None, None),
        (None, "42", None),
        ("2000000", "notapid", None),
    ],
)
def test_parse_watchdog_usec(usec: str | None, pid: str | None, expected: int | None) -> None:
    assert parse_watchdog_usec(usec, pid, own_pid=42) == expected
