"""Reading a unit's log for the API: last N lines without loading the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.api import logtail


@pytest.mark.parametrize(
    ("content", "n", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 5, b""),
        (b"\n\n\n", 2, b"\n\n"),
    ],
)
def test_tail_lines(tmp_path: Path, content: bytes, n: int, expected: bytes) -> None:
    log = tmp_path / "u.log"
    log.write_bytes(content)
    assert logtail.tail_lines(log, n) == (expected, len(content))


def test_tail_of_a_big_file_reads_only_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "big.log"
    with log.open("wb") as f:
        for i in range(200_000):
            f.write(b"line %d\n" % i)
    size = log.stat().st_size
    read: list[int] = []
    real_open = open

    class CountingFile:
        def __init__(self, f: object) -> None:
            self.f = f

        def __enter__(self) -> "CountingFile":
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()  # type: ignore[attr-defined]

        def seek(self, *a: int) -> int:
            return self.f.seek(*a)  # type: ignore[attr-defined]

        def read(self, n: int) -> bytes:
            data = self.f.read(n)  # type: ignore[attr-defined]
            read.append(len(data))
            return data

    monkeypatch.setattr(logtail, "open", lambda p, m: CountingFile(real_open(p, m)), raising=False)
    text, end = logtail.tail_lines(log, 3)
    assert (text, end) == (b"line 199997\nline 199998\nline 199999\n", size)
    assert sum(read) <= logtail.TAIL_BLOCK


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert logtail.tail_lines(tmp_path / "none.log", 5) == (b"", 0)
