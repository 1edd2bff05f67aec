"""Pure: CgroupRef serialisation, ScopeSpec from a unit, /proc/<pid>/cgroup parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.cgroups.cgroupfs import default_cgroup_paths
from supervisor.procfs import parse_proc_cgroup
from supervisor.cgroups.driver import CgroupDriver, CgroupError, CgroupRef, ScopeSpec
from supervisor.units.model import ExecSpec, Resources, Unit, UnitSection

REF = CgroupRef(
    unit="web",
    scope="supd-web.scope",
    slice="supd.slice",
    paths=(
        ("cpu,cpuacct", Path("/sys/fs/cgroup/cpu,cpuacct/supd.slice/supd-web.scope")),
        ("memory", Path("/sys/fs/cgroup/memory/supd.slice/supd-web.scope")),
        ("unified", Path("/sys/fs/cgroup/unified/supd.slice/supd-web.scope")),
    ),
    driver="cgroupfs",
)


def test_ref_round_trips_through_json_text() -> None:
    assert CgroupRef.from_json(json.loads(json.dumps(REF.to_json()))) == REF


def test_ref_path_and_comounted_controller_lookup() -> None:
    assert REF.path("memory") == Path("/sys/fs/cgroup/memory/supd.slice/supd-web.scope")
    assert REF.path("pids") is None
    assert REF.hierarchy_for("cpuacct") == REF.path("cpu,cpuacct")
    assert REF.hierarchy_for("unified") is None


@pytest.mark.parametrize("bad", ["relative/path", "/a/../etc", "/a//b"])
def test_ref_from_json_rejects_unclean_paths(bad: str) -> None:
    data = REF.to_json() | {"paths": {"memory": bad}}
    with pytest.raises(CgroupError, match="clean absolute path"):
        CgroupRef.from_json(data)


def test_ref_from_json_rejects_missing_keys() -> None:
    with pytest.raises(CgroupError, match="expected a CgroupRef"):
        CgroupRef.from_json({"unit": "web"})


def test_scope_spec_for_unit() -> None:
    unit = Unit(
        name="web",
        file=Path("/u/web.toml"),
        exec=ExecSpec(command=("/bin/true",)),
        unit=UnitSection(slice="batch", description="d"),
        resources=Resources(pids_max=3),
    )
    assert ScopeSpec.for_unit(unit) == ScopeSpec("web", "supd-batch.slice", "supd-web.scope", "d", Resources(pids_max=3))


def test_parse_proc_cgroup_hybrid() -> None:
    text = "9:name=systemd:/\n4:memory:/a/b\n1:cpu,cpuacct:/\n0::/x.service\n"
    assert parse_proc_cgroup(text) == {"name=systemd": "/", "memory": "/a/b", "cpu,cpuacct": "/", "unified": "/x.service"}


def test_default_root_is_own_cgroup_only_under_systemd_service() -> None:
    own = {"unified": "/system.slice/supd.service"}
    assert default_cgroup_paths(own, under_systemd=True) == own
    assert default_cgroup_paths(own, under_systemd=False) is None
    assert default_cgroup_paths({"unified": "/"}, under_systemd=True) is None


def test_cgroupfs_driver_satisfies_the_protocol() -> None:
    from supervisor.cgroups.cgroupfs import CgroupfsDriver
    from supervisor.cgroups.layout import Hierarchy, Layout, LayoutKind

    layout = Layout(LayoutKind.UNIFIED, Path("/x"), (), Hierarchy("unified", frozenset(), Path("/x")))
    driver = CgroupfsDriver(layout, "/t", own_cgroups={})
    assert isinstance(driver, CgroupDriver)
    assert driver.roots == {"unified": Path("/x/t")}
    assert driver.describe() == "cgroupfs, unified (cgroup2)"
