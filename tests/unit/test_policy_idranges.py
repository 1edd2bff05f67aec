"""userns id ranges: /etc/subuid parsing, allocation, exhaustion, release, restore."""

from __future__ import annotations

import pytest

from supervisor.policy.idranges import (
    BLOCK,
    IdAllocator,
    IdMapping,
    IdRange,
    RangeConflict,
    RangesExhausted,
    SubidError,
    blocks,
    missing_entry_message,
    parse_subid,
    supd_ranges,
)

SUBUID = "/etc/subuid"


def ranges(text: str) -> tuple[IdRange, ...]:
    return supd_ranges(parse_subid(text, SUBUID))


def test_parse_keeps_supd_lines_and_skips_comments() -> None:
    text = "# shadow\n\nalice:100000:65536\nsupd:200000:131072\n  supd:1000000:65536  \n1001:400000:65536\n"
    entries = parse_subid(text, SUBUID)
    assert [e.owner for e in entries] == ["alice", "supd", "supd", "1001"]
    assert ranges(text) == (IdRange(200000, 131072), IdRange(1000000, 65536))
    assert entries[1].line == 4


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("supd:100000", 'expected "owner:start:count"'),
        ("supd:100000:65536:9", 'expected "owner:start:count"'),
        (":100000:65536", 'expected "owner:start:count"'),
        ("supd:abc:65536", "decimal integers"),
        ("supd:-5:65536", "decimal integers"),
        ("supd:100000:0", "at least 1"),
        ("supd:4294967290:65536", "past the last 32-bit id"),
    ],
)
def test_garbage_lines_name_the_file_the_line_and_the_problem(line: str, problem: str) -> None:
    with pytest.raises(SubidError) as info:
        parse_subid(f"alice:100000:65536\n{line}\n", SUBUID)
    message = str(info.value)
    assert message.startswith(f"{SUBUID}:2: {line!r}")
    assert problem in message


def test_overlapping_supd_lines_are_refused() -> None:
    with pytest.raises(SubidError, match=r"/etc/subuid:2: 'supd:150000:65536' overlaps line 1 'supd:100000:65536'"):
        parse_subid("supd:100000:65536\nsupd:150000:65536\n", SUBUID)


def test_supd_range_overlapping_another_owner_is_refused() -> None:
    with pytest.raises(SubidError, match=r"/etc/subuid:1: 'supd:100000:131072' overlaps line 2 'alice:165536:65536'"):
        parse_subid("supd:100000:131072\nalice:165536:65536\n", SUBUID)


def test_other_owners_may_overlap_each_other() -> None:
    # not our business: only supd's ids must be its own
    assert ranges("alice:100000:65536\nbob:100000:65536\nsupd:300000:65536\n") == (IdRange(300000, 65536),)


def test_missing_entry_message_says_what_to_add_past_existing_ranges() -> None:
    entries = parse_subid("alice:100000:65536\n", SUBUID)
    message = missing_entry_message(SUBUID, entries)
    assert message.startswith('/etc/subuid has no "supd" entry: add a line like "supd:165536:1048576"')
    assert "/etc/subuid and /etc/subgid" in message
    assert '"supd:100000:1048576"' in missing_entry_message(SUBUID)


def test_blocks_cut_whole_aligned_blocks_and_drop_remainders() -> None:
    assert blocks([IdRange(100000, 2 * BLOCK + 5), IdRange(10**6, BLOCK - 1)]) == [
        IdRange(100000, BLOCK),
        IdRange(100000 + BLOCK, BLOCK),
    ]


def test_allocate_gives_disjoint_blocks_and_the_same_one_twice() -> None:
    alloc = IdAllocator()
    uids = gids = [IdRange(100000, 3 * BLOCK)]
    a = alloc.allocate("a", uids, gids)
    b = alloc.allocate("b", uids, gids)
    assert a == IdMapping(100000, 100000) and b == IdMapping(100000 + BLOCK, 100000 + BLOCK)
    assert not a.uids.overlaps(b.uids)
    assert alloc.allocate("a", uids, gids) == a


def test_uid_and_gid_blocks_come_from_their_own_files() -> None:
    alloc = IdAllocator()
    mapping = alloc.allocate("a", [IdRange(100000, BLOCK)], [IdRange(500000, BLOCK)])
    assert mapping == IdMapping(100000, 500000)


def test_exhaustion_names_the_file_and_the_holders_then_release_frees() -> None:
    alloc = IdAllocator()
    uids, gids = [IdRange(100000, BLOCK), IdRange(900000, BLOCK)], [IdRange(100000, 2 * BLOCK)]
    alloc.allocate("a", uids, gids)
    alloc.allocate("b", uids, gids)
    with pytest.raises(RangesExhausted, match=r'/etc/subuid: all 2 blocks of 65536 ids of "supd" are in use \(by a, b\)'):
        alloc.allocate("c", uids, gids)
    assert alloc.release("a") == IdMapping(100000, 100000)
    assert alloc.release("a") is None
    assert alloc.allocate("c", uids, gids) == IdMapping(100000, 100000)


def test_a_range_smaller_than_a_block_is_exhausted_at_once() -> None:
    with pytest.raises(RangesExhausted, match=r'/etc/subgid: the "supd" ranges hold no whole block'):
        IdAllocator().allocate("a", [IdRange(100000, BLOCK)], [IdRange(100000, 1000)])


def test_prefer_takes_the_previous_block_when_free() -> None:
    alloc = IdAllocator()
    uids = gids = [IdRange(100000, 4 * BLOCK)]
    previous = IdMapping(100000 + 2 * BLOCK, 100000 + 2 * BLOCK)
    assert alloc.allocate("a", uids, gids, prefer=previous) == previous
    # held by a: b gets the first free one instead
    assert alloc.allocate("b", uids, gids, prefer=previous) == IdMapping(100000, 100000)
    # a preference outside the ranges is ignored
    assert alloc.allocate("c", uids, gids, prefer=IdMapping(7, 7)) == IdMapping(100000 + BLOCK, 100000 + BLOCK)


def test_restored_claims_are_held_before_new_allocations() -> None:
    alloc = IdAllocator()
    uids = gids = [IdRange(100000, 2 * BLOCK)]
    alloc.claim("old", IdMapping(100000, 100000))
    assert alloc.allocate("new", uids, gids) == IdMapping(100000 + BLOCK, 100000 + BLOCK)
    assert alloc.holders() == {"old": IdMapping(100000, 100000), "new": IdMapping(100000 + BLOCK, 100000 + BLOCK)}


def test_a_claim_outside_todays_ranges_still_blocks_overlapping_blocks() -> None:
    # the subid file was edited while a unit ran on a range now partly reused
    alloc = IdAllocator()
    alloc.claim("old", IdMapping(100000 - 100, 100000 - 100))
    assert alloc.allocate("new", [IdRange(100000, 2 * BLOCK)], [IdRange(100000, 2 * BLOCK)]).uid == 100000 + BLOCK


def test_conflicting_claims_are_refused() -> None:
    alloc = IdAllocator()
    alloc.claim("a", IdMapping(100000, 100000))
    with pytest.raises(RangeConflict, match="recorded for b overlap those held by a"):
        alloc.claim("b", IdMapping(100000 + 10, 500000))
    alloc.claim("a", IdMapping(100000, 100000))  # claiming its own again is fine


def test_mapping_json_round_trip_and_bad_records() -> None:
    m = IdMapping(100000, 200000)
    assert IdMapping.from_json(m.to_json()) == m
    for bad in ({"uid": "1", "gid": 2, "count": 65536}, {"uid": 1, "gid": 2, "count": 0}, {"uid": True, "gid": 1, "count": 1}, [1]):
        with pytest.raises(ValueError, match="userns"):
            IdMapping.from_json(bad)
