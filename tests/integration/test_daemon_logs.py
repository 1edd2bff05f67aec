"""Per-unit log files: O_APPEND writers keep writing across a copytruncate rotation.
(Reading them back is api.logtail's job, tested with the API server.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.daemon import logs


def test_rotation_keeps_appending_writer_and_old_content(tmp_path: Path) -> None:
    fd = logs.open_for_unit(tmp_path, "web")
    path = logs.log_path(tmp_path, "web")
    os.write(fd, b"a" * 600 + b"\n")
    assert not logs.rotate_if_needed(path, max_bytes=1000, keep=2)
    os.write(fd, b"b" * 600 + b"\n")
    assert logs.rotate_if_needed(path, max_bytes=1000, keep=2)
    assert path.stat().st_size == 0
    os.write(fd, b"after\n")  # the child's descriptor goes on at the new end
    assert path.read_bytes() == b"after\n"
    assert path.with_name("web.log.1").read_bytes().count(b"\n") == 2
    os.write(fd, b"c" * 1200 + b"\n")
    assert logs.rotate_if_needed(path, max_bytes=1000, keep=2)
    assert path.with_name("web.log.2").exists()  # the older rotation moved down
    assert path.with_name("web.log.1").read_bytes().startswith(b"after\n")
    os.close(fd)


def test_a_journal_socket_that_is_not_there_is_named_with_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "journal" / "socket"
    with pytest.raises(OSError) as info:
        logs.open_sink(tmp_path, "web", "journald", journal_socket=missing)
    message = info.value.strerror
    assert message.startswith(f"cannot reach journald's socket {missing} (No such file or directory)"), message
    assert "is systemd-journald running?" in message and 'log_driver = "file"' in message
