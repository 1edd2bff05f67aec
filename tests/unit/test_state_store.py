"""Pure parts of the state store: record validation, /proc/<pid>/stat parsing,
and mapping /proc/<pid>/cgroup lines onto cgroupfs directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.daemon.state_store import (
    StateStoreError,
    UnitRecord,
    cgroup_paths_of,
    record_from_json,
)
from supervisor.procfs import CgroupMount, cgroup_dirs, parse_cgroup_mounts, parse_stat

FULL = UnitRecord(
    name="web",
    state="running",
    since=1_700_000_000.5,
    pid=1234,
    pid_start_time=987654,
    cgroup={"unit": "web", "paths": [["memory", "/sys/fs/cgroup/memory/supd.slice/supd-web.scope"]]},
    restarts=2,
    last_exit={"code": 1, "signal": None, "reason": "exit 1"},
    definition="sha256:abc",
    started_at=1_700_000_000.0,
    user_stopped=False,
    frozen_by_user=True,
    boot_id="8c1f0a6e-0000-4000-8000-000000000001",
    shutdown_stopped=True,
    extra={"health": "healthy"},
)


def test_record_json_round_trip() -> None:
    assert record_from_json(FULL.to_json(), "state/web.json") == FULL


def test_minimal_record_takes_defaults() -> None:
    record = record_from_json({"name": "db", "state": "inactive", "since": 5}, "state/db.json")
    assert record == UnitRecord(name="db", state="inactive", since=5.0)
    assert isinstance(record.since, float)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pid": "12"}, '"unit.pid": expected an integer or null, got "12"'),
        ({"pid": True}, '"unit.pid": expected an integer or null, got true'),
        ({"restarts": 1.5}, '"unit.restarts": expected an integer, got 1.5'),
        ({"user_stopped": 1}, '"unit.user_stopped": expected true or false, got 1'),
        ({"cgroup": []}, '"unit.cgroup": expected an object or null, got []'),
        ({"since": None}, '"unit.since": expected a number, got null'),
        ({"colour": "red"}, "unknown keys ['colour']"),
    ],
)
def test_wrong_types_are_named(change: dict[str, Any], message: str) -> None:
    data = FULL.to_json() | change
    with pytest.raises(StateStoreError) as caught:
        record_from_json(data, "state/web.json")
    assert str(caught.value).startswith("state/web.json: ")
    assert message in str(caught.value)


def test_missing_required_key() -> None:
    with pytest.raises(StateStoreError, match=r'"unit.state" is missing'):
        record_from_json({"name": "web", "since": 1.0}, "state/web.json")


def test_unit_must_be_an_object() -> None:
    with pytest.raises(StateStoreError, match=r'"unit": expected an object, got list'):
        record_from_json([], "state/web.json")


def stat_line(comm: str, state: str = "S", start: int = 4242) -> str:
    # fields 3..22 after comm; field 22 is the start time
    after = [state] + [str(n) for n in range(4, 22)] + [str(start)] + ["0"] * 30
    return f"77 ({comm}) " + " ".join(after) + "\n"


@pytest.mark.parametrize("comm", ["sleep", "a b c", "evil) S 1 2 3", "((x))", ") )"])
def test_parse_stat_counts_from_the_last_paren(comm: str) -> None:
    assert parse_stat(stat_line(comm, "R", 123456)) == ("R", 123456)


@pytest.mark.parametrize("text", ["", "77 no paren here", "77 (x) S 1 2", "77 (x) S " + "y " * 30])
def test_parse_stat_garbage(text: str) -> None:
    assert parse_stat(text) is None


HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
50 20 0:40 / /mnt/my\\040cgroups rw - cgroup cgroup rw,pids
"""

PROC_CGROUP = """\
9:name=systemd:/supd.slice/supd-web.scope
4:memory:/supd.slice/supd-web.scope
3:cpu,cpuacct:/supd.slice/supd-web.scope/sub
2:pids:/x
0::/supd.slice/supd-web.scope
"""


def test_parse_cgroup_mounts_hybrid() -> None:
    mounts = parse_cgroup_mounts(HYBRID_MOUNTINFO)
    assert [(str(m.mount_point), sorted(m.controllers)) for m in mounts] == [
        ("/sys/fs/cgroup/cpu,cpuacct", ["cpu", "cpuacct"]),
        ("/sys/fs/cgroup/memory", ["memory"]),
        ("/sys/fs/cgroup/systemd", ["name=systemd"]),
        ("/sys/fs/cgroup/unified", []),
        ("/mnt/my cgroups", ["pids"]),
    ]


def test_cgroup_dirs_maps_every_hierarchy() -> None:
    dirs = cgroup_dirs(PROC_CGROUP, parse_cgroup_mounts(HYBRID_MOUNTINFO))
    assert sorted(map(str, dirs)) == [
        "/mnt/my cgroups/x",
        "/sys/fs/cgroup/cpu,cpuacct/supd.slice/supd-web.scope/sub",
        "/sys/fs/cgroup/memory/supd.slice/supd-web.scope",
        "/sys/fs/cgroup/systemd/supd.slice/supd-web.scope",
        "/sys/fs/cgroup/unified/supd.slice/supd-web.scope",
    ]


def test_cgroup_dirs_with_a_mount_of_a_subtree() -> None:
    # a mount whose root is a sub-cgroup (bind of a delegated subtree)
    mounts = [CgroupMount(Path("/run/deleg"), "/supd.slice", frozenset())]
    assert cgroup_dirs("0::/supd.slice/supd-web.scope\n", mounts) == [Path("/run/deleg/supd-web.scope")]
    assert cgroup_dirs("0::/supd.slice\n", mounts) == [Path("/run/deleg")]
    assert cgroup_dirs("0::/other.slice/x\n", mounts) == []


def test_cgroup_paths_of_a_stored_ref() -> None:
    assert cgroup_paths_of(None) == []
    assert cgroup_paths_of({"paths": [["memory", "/a"], ["unified", "/b"]]}) == ["/a", "/b"]
    assert cgroup_paths_of({"paths": {"memory": "/a"}}) == ["/a"]
