"""Unit resources -> cgroup v2 files, v1 files, systemd properties (pure).

Every conversion follows systemd's meaning of the property, so a unit behaves
the same under the cgroupfs and the systemd driver:
- CPUWeight -> cpu.shares: shares = weight * 1024 / 100, clamped to 2..262144
  (systemd cgroup_cpu_weight_to_shares).
- IOWeight -> blkio.weight: weight * 500 / 100, clamped to 10..1000
  (systemd cgroup_weight_io_to_blkio).
- CPUQuota -> cpu.max "quota period" with a 100 ms period; the kernel refuses a
  quota under 1 ms, so it is raised to that (systemd does the same).

`clear_unset=True` (live updates) also emits the "no limit" value for every
unset resource, so deleting a limit from the unit file removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.units.model import Resources

# --- cgroup v2 files
MEMORY_MAX = "memory.max"
MEMORY_HIGH = "memory.high"
CPU_WEIGHT = "cpu.weight"
CPU_MAX = "cpu.max"
PIDS_MAX = "pids.max"
IO_WEIGHT = "io.weight"
CPUSET_CPUS = "cpuset.cpus"
CPUSET_MEMS = "cpuset.mems"

# --- cgroup v1 files
V1_MEMORY_LIMIT = "memory.limit_in_bytes"
V1_MEMORY_SOFT_LIMIT = "memory.soft_limit_in_bytes"
V1_CPU_SHARES = "cpu.shares"
V1_CFS_PERIOD = "cpu.cfs_period_us"
V1_CFS_QUOTA = "cpu.cfs_quota_us"
V1_PIDS_MAX = "pids.max"
V1_BLKIO_WEIGHT = "blkio.weight"
V1_CPUSET_CPUS = "cpuset.cpus"
V1_CPUSET_MEMS = "cpuset.mems"
V1_BLKIO_BFQ_WEIGHT = "blkio.bfq.weight"  # same 10..1000 range; the only one with BFQ

# Where a v1 file may be missing, the files that mean the same thing.
V1_FILE_ALTERNATIVES: dict[str, tuple[str, ...]] = {V1_BLKIO_WEIGHT: (V1_BLKIO_BFQ_WEIGHT,)}

# --- systemd properties
SD_MEMORY_MAX = "MemoryMax"
SD_MEMORY_HIGH = "MemoryHigh"
SD_CPU_WEIGHT = "CPUWeight"
SD_CPU_QUOTA_PER_SEC = "CPUQuotaPerSecUSec"
SD_CPU_QUOTA_PERIOD = "CPUQuotaPeriodUSec"
SD_TASKS_MAX = "TasksMax"
SD_IO_WEIGHT = "IOWeight"
SD_ALLOWED_CPUS = "AllowedCPUs"

# --- unit-file keys, for warnings ("web: [resources].io_weight: ...")
KEY_MEMORY_MAX = "[resources].memory_max"
KEY_MEMORY_HIGH = "[resources].memory_high"
KEY_CPU_WEIGHT = "[resources].cpu_weight"
KEY_CPU_QUOTA = "[resources].cpu_quota"
KEY_PIDS_MAX = "[resources].pids_max"
KEY_IO_WEIGHT = "[resources].io_weight"
KEY_CPUSET = "[resources].cpuset"

# --- numbers
CPU_PERIOD_US = 100_000
CPU_QUOTA_MIN_US = 1_000
USEC_PER_SEC = 1_000_000
UINT64_MAX = 2**64 - 1  # systemd's "infinity" / "unset" for t properties
CPU_SHARES_DEFAULT = 1024
CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262_144
CGROUP_WEIGHT_DEFAULT = 100
CGROUP_WEIGHT_MIN = 1
CGROUP_WEIGHT_MAX = 10_000
BLKIO_WEIGHT_DEFAULT = 500
BLKIO_WEIGHT_MIN = 10
BLKIO_WEIGHT_MAX = 1000

V2_MAX = "max"
V1_UNLIMITED = "-1"


@dataclass(frozen=True)
class CopyFromParent:
    """Marker value: write the parent cgroup's content of `source` (None: the
    same file). v1 cpusets start empty and refuse tasks until filled; a
    populated v2 cpuset refuses an empty cpuset.cpus (ENOSPC), so clearing
    one means "every CPU the parent has": its cpuset.cpus.effective."""

    source: str | None = None

    def __repr__(self) -> str:
        return "COPY_FROM_PARENT" if self.source is None else f"COPY_FROM_PARENT({self.source})"


COPY_FROM_PARENT = CopyFromParent()
COPY_PARENT_EFFECTIVE_CPUS = CopyFromParent("cpuset.cpus.effective")


@dataclass(frozen=True)
class FileWrite:
    """One write of `value` to `file` in the hierarchy carrying `controller`.
    `key` is the unit-file key it comes from, for warnings."""

    controller: str  # "memory", "cpu", "pids", "io"/"blkio", "cpuset"
    file: str
    value: str | CopyFromParent
    key: str


SystemdProperty = tuple[str, tuple[str, object]]  # (name, (D-Bus signature, value))


# --- pure conversions


def cpu_weight_to_shares(weight: int) -> int:
    return max(CPU_SHARES_MIN, min(CPU_SHARES_MAX, weight * CPU_SHARES_DEFAULT // CGROUP_WEIGHT_DEFAULT))


def cpu_shares_to_weight(shares: int) -> int:
    return max(CGROUP_WEIGHT_MIN, min(CGROUP_WEIGHT_MAX, shares * CGROUP_WEIGHT_DEFAULT // CPU_SHARES_DEFAULT))


def io_weight_to_blkio(weight: int) -> int:
    return max(BLKIO_WEIGHT_MIN, min(BLKIO_WEIGHT_MAX, weight * BLKIO_WEIGHT_DEFAULT // CGROUP_WEIGHT_DEFAULT))


def blkio_to_io_weight(blkio: int) -> int:
    return max(CGROUP_WEIGHT_MIN, min(CGROUP_WEIGHT_MAX, blkio * CGROUP_WEIGHT_DEFAULT // BLKIO_WEIGHT_DEFAULT))


def cpu_quota_to_us(quota: float, period_us: int = CPU_PERIOD_US) -> int:
    """A fraction of one CPU (0.5 = 50 %) -> microseconds per period, at least 1 ms."""
    return max(CPU_QUOTA_MIN_US, round(quota * period_us))


def cpu_max_value(quota: float | None) -> str:
    """The cpu.max line: "20000 100000", or "max 100000" for no quota."""
    if quota is None:
        return f"{V2_MAX} {CPU_PERIOD_US}"
    return f"{cpu_quota_to_us(quota)} {CPU_PERIOD_US}"


def parse_cpu_max(text: str) -> float | None:
    """cpu.max content -> fraction of one CPU, None for "max"."""
    fields = text.split()
    if not fields or fields[0] == V2_MAX:
        return None
    period = int(fields[1]) if len(fields) > 1 else CPU_PERIOD_US
    return int(fields[0]) / period


def parse_cpu_list(cpus: str) -> list[int]:
    """ "0-2,5" -> [0, 1, 2, 5]."""
    result: set[int] = set()
    for part in cpus.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            if int(lo) > int(hi):
                raise ValueError(f"cpu list {cpus!r}: range {part!r} is backwards")
            result.update(range(int(lo), int(hi) + 1))
        else:
            result.add(int(part))
    return sorted(result)


def cpu_list_to_mask(cpus: str) -> bytes:
    """A cpu list as systemd's cpu_set_to_dbus bytes: bit (i % 8) of byte i // 8
    is set for cpu i."""
    ids = parse_cpu_list(cpus)
    if not ids:
        return b""
    mask = bytearray(ids[-1] // 8 + 1)
    for i in ids:
        mask[i // 8] |= 1 << (i % 8)
    return bytes(mask)


def mask_to_cpu_list(mask: bytes) -> str:
    """Inverse of cpu_list_to_mask, with ranges collapsed: b"\\x0b" -> "0-1,3"."""
    ids = [i * 8 + bit for i, byte in enumerate(mask) for bit in range(8) if byte & (1 << bit)]
    ranges: list[list[int]] = []
    for i in ids:
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


# --- whole-resource translations


def v2_files(resources: Resources, *, clear_unset: bool = False) -> list[FileWrite]:
    """Writes for a cgroup2 scope, in a safe order."""
    r = resources
    out: list[FileWrite] = []

    def add(controller: str, file: str, value: str | None, unset: str | CopyFromParent, key: str) -> None:
        if value is not None:
            out.append(FileWrite(controller, file, value, key))
        elif clear_unset:
            out.append(FileWrite(controller, file, unset, key))

    add("memory", MEMORY_HIGH, _opt(r.memory_high), V2_MAX, KEY_MEMORY_HIGH)
    add("memory", MEMORY_MAX, _opt(r.memory_max), V2_MAX, KEY_MEMORY_MAX)
    add("cpu", CPU_WEIGHT, _opt(r.cpu_weight), str(CGROUP_WEIGHT_DEFAULT), KEY_CPU_WEIGHT)
    add("cpu", CPU_MAX, None if r.cpu_quota is None else cpu_max_value(r.cpu_quota), cpu_max_value(None), KEY_CPU_QUOTA)
    add("pids", PIDS_MAX, None if r.pids_max is None else _pids_value(r.pids_max), V2_MAX, KEY_PIDS_MAX)
    add(
        "io",
        IO_WEIGHT,
        None if r.io_weight is None else f"default {r.io_weight}",
        f"default {CGROUP_WEIGHT_DEFAULT}",
        KEY_IO_WEIGHT,
    )
    add("cpuset", CPUSET_CPUS, r.cpuset, COPY_PARENT_EFFECTIVE_CPUS, KEY_CPUSET)
    return out


def v1_files(resources: Resources, *, clear_unset: bool = False) -> list[FileWrite]:
    """Writes for a scope in the v1 hierarchies, grouped by controller."""
    r = resources
    out: list[FileWrite] = []

    def add(controller: str, file: str, value: str | CopyFromParent | None, unset: str | CopyFromParent, key: str) -> None:
        if value is not None:
            out.append(FileWrite(controller, file, value, key))
        elif clear_unset:
            out.append(FileWrite(controller, file, unset, key))

    add("memory", V1_MEMORY_LIMIT, _opt(r.memory_max), V1_UNLIMITED, KEY_MEMORY_MAX)
    add("memory", V1_MEMORY_SOFT_LIMIT, _opt(r.memory_high), V1_UNLIMITED, KEY_MEMORY_HIGH)
    add(
        "cpu",
        V1_CPU_SHARES,
        None if r.cpu_weight is None else str(cpu_weight_to_shares(r.cpu_weight)),
        str(CPU_SHARES_DEFAULT),
        KEY_CPU_WEIGHT,
    )
    if r.cpu_quota is not None:
        # Period before quota: the quota is checked against the period in force.
        out.append(FileWrite("cpu", V1_CFS_PERIOD, str(CPU_PERIOD_US), KEY_CPU_QUOTA))
        out.append(FileWrite("cpu", V1_CFS_QUOTA, str(cpu_quota_to_us(r.cpu_quota)), KEY_CPU_QUOTA))
    elif clear_unset:
        out.append(FileWrite("cpu", V1_CFS_QUOTA, V1_UNLIMITED, KEY_CPU_QUOTA))
    add("pids", V1_PIDS_MAX, None if r.pids_max is None else _pids_value(r.pids_max), V2_MAX, KEY_PIDS_MAX)
    add(
        "blkio",
        V1_BLKIO_WEIGHT,
        None if r.io_weight is None else str(io_weight_to_blkio(r.io_weight)),
        str(BLKIO_WEIGHT_DEFAULT),
        KEY_IO_WEIGHT,
    )
    add("cpuset", V1_CPUSET_CPUS, r.cpuset, COPY_FROM_PARENT, KEY_CPUSET)
    return out


def v1_cpuset_init() -> list[FileWrite]:
    """A new v1 cpuset cgroup starts empty and refuses tasks until both files are
    filled; every new level copies them from its parent."""
    return [
        FileWrite("cpuset", V1_CPUSET_CPUS, COPY_FROM_PARENT, KEY_CPUSET),
        FileWrite("cpuset", V1_CPUSET_MEMS, COPY_FROM_PARENT, KEY_CPUSET),
    ]


def systemd_properties(resources: Resources, *, clear_unset: bool = False) -> list[SystemdProperty]:
    """systemd unit properties as (name, (signature, value)) for jeepney.
    Unset (with clear_unset) is UINT64_MAX for "t" (systemd's infinity, and
    "default" for weights) and an empty mask for AllowedCPUs."""
    r = resources
    out: list[SystemdProperty] = []

    def add_t(name: str, value: int | None) -> None:
        if value is not None:
            out.append((name, ("t", value)))
        elif clear_unset:
            out.append((name, ("t", UINT64_MAX)))

    add_t(SD_MEMORY_MAX, r.memory_max)
    add_t(SD_MEMORY_HIGH, r.memory_high)
    add_t(SD_CPU_WEIGHT, r.cpu_weight)
    add_t(SD_CPU_QUOTA_PER_SEC, None if r.cpu_quota is None else round(r.cpu_quota * USEC_PER_SEC))
    add_t(SD_TASKS_MAX, r.pids_max)
    add_t(SD_IO_WEIGHT, r.io_weight)
    if r.cpuset is not None:
        out.append((SD_ALLOWED_CPUS, ("ay", cpu_list_to_mask(r.cpuset))))
    elif clear_unset:
        out.append((SD_ALLOWED_CPUS, ("ay", b"")))
    return out


def cpu_quota_period_property(period_us: int = CPU_PERIOD_US) -> SystemdProperty:
    """Optional: pin systemd's quota period to the one the cgroupfs driver uses."""
    return (SD_CPU_QUOTA_PERIOD, ("t", period_us))


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


def _pids_value(pids_max: int) -> str:
    # 0 would mean "no process may run", which systemd can't express either;
    # follow runc/youki and make it 1.
    return str(max(1, pids_max))
