"""procfs's pure parsers (stat, cgroup membership and the cgroup mounts are
covered in test_state_store.py and test_cgroups_layout.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.procfs import Mount, boot_id, parse_mountinfo, unescape

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


def test_boot_id_names_the_kernel_boot_and_pid_1s_start(tmp_path: Path) -> None:
    kernel, init = tmp_path / "boot_id", tmp_path / "stat"
    kernel.write_text("8c1f0a6e-0000-4000-8000-000000000001\n")
    init.write_text("1 (sys temd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 42 1000 10\n")
    assert boot_id(kernel, init) == "8c1f0a6e-0000-4000-8000-000000000001@42"
    assert boot_id(kernel, tmp_path / "missing") == "8c1f0a6e-0000-4000-8000-000000000001"
    assert boot_id(tmp_path / "missing", init) == ""
