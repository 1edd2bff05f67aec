"""The daemon's id ranges: subid files read at each allocation, errors naming
the unit file and key, claims of recorded ranges (no root: no upper dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.daemon.userns import UsernsError, UsernsRanges
from supervisor.policy.idranges import IdMapping
from supervisor.units.parse import parse_unit

BLOCK = 65536


def userns_unit(name: str) -> object:
    return parse_unit(name, {"exec": {"command": ["/bin/sh"]}, "rootfs": {"layers": ["/l"], "userns": "auto"}}, Path(f"units/{name}.toml"))


def files(tmp_path: Path, subuid: str | None, subgid: str | None = None) -> UsernsRanges:
    uid, gid = tmp_path / "subuid", tmp_path / "subgid"
    if subuid is not None:
        uid.write_text(subuid)
    text = subuid if subgid is None else subgid
    if text is not None:
        gid.write_text(text)
    return UsernsRanges(uid, gid)


def test_allocate_hold_release(tmp_path: Path) -> None:
    ranges = files(tmp_path, "supd:100000:131072\n", "supd:500000:65536\nsupd:700000:65536\n")
    a = ranges.allocate(userns_unit("a"))  # type: ignore[arg-type]
    b = ranges.allocate(userns_unit("b"))  # type: ignore[arg-type]
    assert (a, b) == (IdMapping(100000, 500000), IdMapping(100000 + BLOCK, 700000))
    assert ranges.held("a") == a
    ranges.release("a")
    assert ranges.held("a") is None
    ranges.release("a")  # twice is fine


def test_edits_to_the_files_apply_at_the_next_allocation(tmp_path: Path) -> None:
    ranges = files(tmp_path, "alice:100000:65536\n")
    with pytest.raises(UsernsError, match="has no \"supd\" entry"):
        ranges.allocate(userns_unit("a"))  # type: ignore[arg-type]
    (tmp_path / "subuid").write_text("supd:200000:65536\n")
    (tmp_path / "subgid").write_text("supd:200000:65536\n")
    assert ranges.allocate(userns_unit("a")) == IdMapping(200000, 200000)  # type: ignore[arg-type]


def test_missing_files_and_entries_name_the_unit_key_and_what_to_add(tmp_path: Path) -> None:
    ranges = files(tmp_path, None)
    with pytest.raises(UsernsError) as info:
        ranges.allocate(userns_unit("web"))  # type: ignore[arg-type]
    assert str(info.value) == (
        f'units/web.toml: [rootfs].userns: {tmp_path / "subuid"} has no "supd" entry: add a line like '
        '"supd:100000:1048576" to /etc/subuid and /etc/subgid (16 userns units of 65536 ids)'
    )
    only_uids = files(tmp_path, "supd:100000:65536\n", "")
    with pytest.raises(UsernsError, match=f"{tmp_path / 'subgid'} has no \"supd\" entry"):
        only_uids.allocate(userns_unit("web"))  # type: ignore[arg-type]


def test_garbage_and_exhaustion_are_unit_errors(tmp_path: Path) -> None:
    with pytest.raises(UsernsError, match=r"units/web.toml: \[rootfs\].userns: .*subuid:1: 'supd:x:1': start and count"):
        files(tmp_path, "supd:x:1\n").allocate(userns_unit("web"))  # type: ignore[arg-type]
    ranges = files(tmp_path, "supd:100000:65536\n")
    ranges.allocate(userns_unit("a"))  # type: ignore[arg-type]
    with pytest.raises(UsernsError, match=r"units/b.toml: \[rootfs\].userns: .*all 1 blocks of 65536 ids .*\(by a\)"):
        ranges.allocate(userns_unit("b"))  # type: ignore[arg-type]


def test_claims_hold_recorded_ranges_and_bad_records_are_skipped(tmp_path: Path) -> None:
    ranges = files(tmp_path, "supd:100000:131072\n")
    ranges.claim("old", {"uid": 100000, "gid": 100000, "count": BLOCK})
    ranges.claim("garbage", {"uid": "x"})
    ranges.claim("clash", {"uid": 100005, "gid": 900000, "count": BLOCK})
    assert ranges.held("garbage") is None and ranges.held("clash") is None
    assert ranges.allocate(userns_unit("new")) == IdMapping(100000 + BLOCK, 100000 + BLOCK)  # type: ignore[arg-type]


def test_records_carry_the_block_of_the_units_last_process() -> None:
    from supervisor.daemon import restore
    from supervisor.daemon.unitrun import UnitRun

    u = UnitRun(name="a", file=Path("units/a.toml"), unit=userns_unit("a"))  # type: ignore[arg-type]
    assert restore.record_for(u, "boot").extra == {}
    u.userns = IdMapping(100000, 200000)
    record = restore.record_for(u, "boot")
    assert record.extra == {"userns": {"uid": 100000, "gid": 200000, "count": BLOCK}}
    # what the state writer compares: a different block is a different record
    u.userns = None
    assert restore.adoption_key(record) != restore.adoption_key(restore.record_for(u, "boot"))
