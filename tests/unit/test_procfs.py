"""procfs's pure parsers (stat, cgroup membership and the cgroup mounts are
covered in test_state_store.py and test_cgroups_layout.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.procfs import Mount, parse_mountinfo, unescape

LINE = r"36 25 0:31 / /srv/my\040dir rw,relatime shared:9 - ext4 /dev/sda1 rw,errors=remount-ro"


def test_unescape_undoes_the_kernels_octal_escapes_only() -> None:
    assert unescape(r"/a\040b\011c\134d") == "/a b\tc\\d"
    assert unescape(r"/plain\09x") == r"/plain\09x"  # not three octal digits: kept


def test_mountinfo_line_with_optional_fields() -> None:
    assert parse_mountinfo(LINE) == [Mount(Path("/srv/my dir"), "/", "ext4", ("rw", "errors=remount-ro"))]


def test_a_malformed_line_is_an_error_or_skipped() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_mountinfo(LINE + "\nnonsense\n")
    assert len(parse_mountinfo(LINE + "\nnonsense\n", strict=False)) == 1
