"""tree.py readers on fixture files (youki's set_fixture idea), and driver
selection. No root needed: these read files in a tmpdir and /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.cgroups import tree
from supervisor.cgroups.cgroupfs import CgroupfsDriver
from supervisor.cgroups.driver import CgroupError, CgroupRef, CgroupStats
from supervisor.cgroups.select import open_driver


def fixture_dir(base: Path, name: str, files: dict[str, str]) -> Path:
    d = base / name
    d.mkdir()
    for file, content in files.items():
        (d / file).write_text(content)
    return d


def ref_of(**paths: Path) -> CgroupRef:
    return CgroupRef("web", "supd-web.scope", "supd.slice", tuple(sorted(paths.items())), "cgroupfs")


def test_v1_stats_treat_huge_limits_as_none(tmp_path: Path) -> None:
    memory = fixture_dir(
        tmp_path,
        "memory",
        {
            "memory.usage_in_bytes": "4096\n",
            "memory.max_usage_in_bytes": "8192\n",
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.soft_limit_in_bytes": "1048576\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        },
    )
    cpuacct = fixture_dir(tmp_path, "cpuacct", {"cpuacct.usage": "123456\n"})
    pids = fixture_dir(tmp_path, "pids", {"pids.current": "2\n", "pids.max": "max\n"})
    freezer = fixture_dir(tmp_path, "freezer", {"freezer.state": "THAWED\n"})
    stats = tree.stats(ref_of(memory=memory, cpuacct=cpuacct, pids=pids, freezer=freezer))
    assert stats == CgroupStats(
        memory_current=4096,
        memory_peak=8192,
        memory_max=None,
        memory_high=1048576,
        cpu_usage_ns=123456,
        pids_current=2,
        pids_max=None,
        oom_kills=3,
        frozen=False,
    )


def test_v2_stats(tmp_path: Path) -> None:
    unified = fixture_dir(
        tmp_path,
        "unified",
        {
            "memory.current": "100\n",
            "memory.peak": "200\n",
            "memory.max": "max\n",
            "memory.high": "300\n",
            "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
            "cpu.stat": "usage_usec 7\nuser_usec 5\nsystem_usec 2\n",
            "pids.current": "1\n",
            "pids.max": "10\n",
            "cgroup.freeze": "1\n",
            "cgroup.events": "populated 1\nfrozen 1\n",
        },
    )
    stats = tree.stats(ref_of(unified=unified))
    assert stats == CgroupStats(100, 200, None, 300, 7000, 1, 10, 1, True)


def test_stats_with_nothing_readable_are_none(tmp_path: Path) -> None:
    assert tree.stats(ref_of(unified=tmp_path / "gone")) == CgroupStats()


def test_write_error_names_path_and_data(tmp_path: Path) -> None:
    with pytest.raises(CgroupError) as e:
        tree.write(tmp_path / "missing", "memory.max", "42")
    assert e.value.data == "42" and str(tmp_path / "missing" / "memory.max") in str(e.value)


def test_keyed_parses_flat_keyed_files() -> None:
    assert tree.keyed("populated 1\nfrozen 0\n") == {"populated": "1", "frozen": "0"}


@pytest.mark.asyncio
async def test_rmdir_tree_of_missing_dir_is_fine(tmp_path: Path) -> None:
    await tree.rmdir_tree(tmp_path / "nothing")


@pytest.mark.asyncio
async def test_open_driver_cgroupfs_uses_the_given_root() -> None:
    driver = await open_driver("cgroupfs", "/supdtest-select")
    assert isinstance(driver, CgroupfsDriver)
    assert all(p.name == "supdtest-select" for p in driver.roots.values())
    assert not any(p.exists() for p in driver.roots.values()), "opening makes no cgroup"
    assert driver.describe().startswith("cgroupfs, ")


@pytest.mark.asyncio
async def test_auto_without_systemd_is_cgroupfs(tmp_path: Path) -> None:
    driver = await open_driver("auto", None, systemd_marker=tmp_path / "no-systemd")
    assert driver.name == "cgroupfs"


@pytest.mark.asyncio
async def test_auto_falls_back_when_the_bus_does_not_answer(tmp_path: Path) -> None:
    driver = await open_driver(
        "auto", None, systemd_marker=tmp_path, bus_address=f"unix:path={tmp_path}/no-bus"
    )
    assert driver.name == "cgroupfs"


@pytest.mark.asyncio
async def test_unknown_driver_kind_is_an_error() -> None:
    with pytest.raises(CgroupError, match="expected"):
        await open_driver("docker")  # type: ignore[arg-type]
