"""Pure: unit resources -> cgroup v2 files, v1 files, systemd properties."""

from __future__ import annotations

import pytest

from supervisor.cgroups import translate as t
from supervisor.units.model import Resources


def files(writes: list[t.FileWrite]) -> dict[str, str | t.CopyFromParent]:
    return {w.file: w.value for w in writes}


# --- conversions (systemd's arithmetic)


@pytest.mark.parametrize(
    ("weight", "shares"),
    [(100, 1024), (1, 10), (10000, 102400), (50, 512)],
)
def test_cpu_weight_to_shares_follows_systemd(weight: int, shares: int) -> None:
    assert t.cpu_weight_to_shares(weight) == shares


def test_cpu_shares_are_clamped_to_kernel_range() -> None:
    assert t.cpu_weight_to_shares(0) == t.CPU_SHARES_MIN
    assert t.cpu_weight_to_shares(10**6) == t.CPU_SHARES_MAX


def test_cpu_shares_to_weight_inverts_the_default() -> None:
    assert t.cpu_shares_to_weight(1024) == 100
    assert t.cpu_shares_to_weight(2) == 1


@pytest.mark.parametrize(("io", "blkio"), [(100, 500), (1, 10), (10000, 1000), (20, 100), (200, 1000)])
def test_io_weight_to_blkio_follows_systemd(io: int, blkio: int) -> None:
    assert t.io_weight_to_blkio(io) == blkio


def test_blkio_to_io_weight() -> None:
    assert t.blkio_to_io_weight(500) == 100


def test_cpu_max_value_for_quota_and_none() -> None:
    assert t.cpu_max_value(0.5) == "50000 100000"
    assert t.cpu_max_value(2.0) == "200000 100000"
    assert t.cpu_max_value(None) == "max 100000"


def test_tiny_quota_is_raised_to_the_kernel_minimum() -> None:
    assert t.cpu_max_value(0.001) == "1000 100000"


def test_parse_cpu_max() -> None:
    assert t.parse_cpu_max("20000 100000\n") == pytest.approx(0.2)
    assert t.parse_cpu_max("max 100000") is None


@pytest.mark.parametrize(
    ("cpus", "mask"),
    [("0", b"\x01"), ("0-1,3", b"\x0b"), ("8", b"\x00\x01"), ("", b"")],
)
def test_cpu_list_to_systemd_mask(cpus: str, mask: bytes) -> None:
    assert t.cpu_list_to_mask(cpus) == mask


def test_mask_round_trips_to_collapsed_cpu_list() -> None:
    assert t.mask_to_cpu_list(t.cpu_list_to_mask("0,2-9,15")) == "0,2-9,15"


def test_backwards_cpu_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="backwards"):
        t.parse_cpu_list("3-1")


# --- v2 files

FULL = Resources(
    memory_max=64 << 20,
    memory_high=48 << 20,
    cpu_weight=200,
    cpu_quota=0.5,
    pids_max=64,
    io_weight=300,
    cpuset="0-1",
)


def test_v2_files_for_every_resource() -> None:
    assert files(t.v2_files(FULL)) == {
        "memory.high": str(48 << 20),
        "memory.max": str(64 << 20),
        "cpu.weight": "200",
        "cpu.max": "50000 100000",
        "pids.max": "64",
        "io.weight": "default 300",
        "cpuset.cpus": "0-1",
    }


def test_v2_files_skip_unset_on_create() -> None:
    assert t.v2_files(Resources()) == []
    assert files(t.v2_files(Resources(pids_max=5))) == {"pids.max": "5"}


def test_v2_files_clear_unset_on_update() -> None:
    assert files(t.v2_files(Resources(), clear_unset=True)) == {
        "memory.high": "max",
        "memory.max": "max",
        "cpu.weight": "100",
        "cpu.max": "max 100000",
        "pids.max": "max",
        "io.weight": "default 100",
        "cpuset.cpus": t.COPY_PARENT_EFFECTIVE_CPUS,
    }


def test_pids_max_zero_becomes_one() -> None:
    assert files(t.v2_files(Resources(pids_max=0))) == {"pids.max": "1"}


def test_v2_writes_name_controller_and_unit_key() -> None:
    (w,) = t.v2_files(Resources(io_weight=10))
    assert (w.controller, w.key) == ("io", "[resources].io_weight")


# --- v1 files


def test_v1_files_for_every_resource() -> None:
    writes = t.v1_files(FULL)
    assert files(writes) == {
        "memory.limit_in_bytes": str(64 << 20),
        "memory.soft_limit_in_bytes": str(48 << 20),
        "cpu.shares": "2048",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "50000",
        "pids.max": "64",
        "blkio.weight": "1000",
        "cpuset.cpus": "0-1",
    }
    assert {w.file: w.controller for w in writes}["blkio.weight"] == "blkio"


def test_v1_period_is_written_before_quota() -> None:
    order = [w.file for w in t.v1_files(Resources(cpu_quota=0.2))]
    assert order == ["cpu.cfs_period_us", "cpu.cfs_quota_us"]


def test_v1_files_clear_unset_on_update() -> None:
    assert files(t.v1_files(Resources(), clear_unset=True)) == {
        "memory.limit_in_bytes": "-1",
        "memory.soft_limit_in_bytes": "-1",
        "cpu.shares": "1024",
        "cpu.cfs_quota_us": "-1",
        "pids.max": "max",
        "blkio.weight": "500",
        "cpuset.cpus": t.COPY_FROM_PARENT,
    }


def test_v1_cpuset_init_copies_cpus_and_mems_from_parent() -> None:
    assert files(t.v1_cpuset_init()) == {"cpuset.cpus": t.COPY_FROM_PARENT, "cpuset.mems": t.COPY_FROM_PARENT}


def test_v1_blkio_weight_has_the_bfq_alternative() -> None:
    assert t.V1_FILE_ALTERNATIVES["blkio.weight"] == ("blkio.bfq.weight",)


# --- systemd properties


def test_systemd_properties_for_every_resource() -> None:
    assert dict(t.systemd_properties(FULL)) == {
        "MemoryMax": ("t", 64 << 20),
        "MemoryHigh": ("t", 48 << 20),
        "CPUWeight": ("t", 200),
        "CPUQuotaPerSecUSec": ("t", 500_000),
        "TasksMax": ("t", 64),
        "IOWeight": ("t", 300),
        "AllowedCPUs": ("ay", b"\x03"),
    }


def test_systemd_properties_skip_unset_on_create() -> None:
    assert t.systemd_properties(Resources()) == []


def test_systemd_properties_clear_unset_with_infinity() -> None:
    props = dict(t.systemd_properties(Resources(), clear_unset=True))
    for name in ("MemoryMax", "MemoryHigh", "CPUWeight", "CPUQuotaPerSecUSec", "TasksMax", "IOWeight"):
        assert props[name] == ("t", 2**64 - 1)
    assert props["AllowedCPUs"] == ("ay", b"")


def test_quota_over_one_cpu_in_usec_per_sec() -> None:
    assert dict(t.systemd_properties(Resources(cpu_quota=2.0)))["CPUQuotaPerSecUSec"] == ("t", 2_000_000)


def test_quota_period_property() -> None:
    assert t.cpu_quota_period_property() == ("CPUQuotaPeriodUSec", ("t", 100_000))
