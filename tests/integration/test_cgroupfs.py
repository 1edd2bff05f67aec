"""The cgroupfs driver and tree ops on the real kernel (root).

Every test works under its own cgroup root `/<hierarchy>/supdtest<hex>` in
each hierarchy, so it never touches a real supd.slice; the fixture removes it.
Checks look at the kernel's files, not only at what the driver reports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from supervisor.cgroups import tree
from supervisor.cgroups.cgroupfs import CgroupfsDriver
from supervisor.cgroups.driver import UNIFIED, CgroupError, CgroupRef, ScopeSpec
from supervisor.cgroups.layout import Layout, LayoutKind
from supervisor.units.model import Resources
from tests.conftest import requires_root
from tests.layouts import ncpus, requires_unified, requires_v1

pytestmark = [requires_root, pytest.mark.root]

DEADLINE = 30.0


def wait_for(check: Callable[[], bool], timeout: float = DEADLINE, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Procs:
    """Processes a test starts; every one is killed by pid and reaped at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def python(self, code: str, *, gated: bool = False) -> subprocess.Popen[bytes]:
        """Run `code`; with gated=True it first waits for a line on stdin, so the
        test can place it in a cgroup before it does anything."""
        prelude = "import sys; sys.stdin.readline()\n" if gated else ""
        p = subprocess.Popen([sys.executable, "-c", prelude + code], stdin=subprocess.PIPE)
        self.started.append(p)
        return p

    def go(self, p: subprocess.Popen[bytes]) -> None:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()

    def cleanup(self) -> None:
        for p in self.started:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=DEADLINE)
            if p.stdin:
                p.stdin.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    ps.cleanup()


def spec(unit: str, resources: Resources = Resources(), slice: str = "supd.slice") -> ScopeSpec:
    return ScopeSpec(unit=unit, slice=slice, scope=f"supd-{unit}.scope", description="test", resources=resources)


def proc_cgroups(pid: int) -> set[str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.rstrip("\n").split(":", 2)[2] for line in f}


def file_of(ref: CgroupRef, controller: str, name: str) -> str:
    directory = ref.hierarchy_for(controller)
    assert directory is not None, f"no {controller} hierarchy in {ref.paths}"
    return (directory / name).read_text().strip()


def cpu_usage_ns(ref: CgroupRef) -> int:
    usage = tree.stats(ref).cpu_usage_ns
    assert usage is not None
    return usage


FIVE_LIMITS = Resources(memory_max=32 << 20, memory_high=24 << 20, cpu_weight=200, cpu_quota=0.5, pids_max=40)
BUSY_LOOP = "while True: pass"


def v1_host(layout: Layout) -> bool:
    return layout.kind is not LayoutKind.UNIFIED


@pytest.mark.asyncio
async def test_create_writes_limits_and_places_the_process(driver: CgroupfsDriver, layout: Layout, procs: Procs) -> None:
    p = procs.python("import time; time.sleep(600)")
    ref, warnings = await driver.create(spec("web", FIVE_LIMITS), p.pid)
    assert warnings == []
    if v1_host(layout):
        assert file_of(ref, "memory", "memory.limit_in_bytes") == str(32 << 20)
        assert file_of(ref, "memory", "memory.soft_limit_in_bytes") == str(24 << 20)
        assert file_of(ref, "cpu", "cpu.shares") == "2048"
        assert file_of(ref, "cpu", "cpu.cfs_period_us") == "100000"
        assert file_of(ref, "cpu", "cpu.cfs_quota_us") == "50000"
        assert file_of(ref, "pids", "pids.max") == "40"
    else:
        unified = ref.path(UNIFIED)
        assert unified is not None
        assert (unified / "memory.max").read_text().strip() == str(32 << 20)
        assert (unified / "memory.high").read_text().strip() == str(24 << 20)
        assert (unified / "cpu.weight").read_text().strip() == "200"
        assert (unified / "cpu.max").read_text().strip() == "50000 100000"
        assert (unified / "pids.max").read_text().strip() == "40"
    # The kernel's view: the process is in the scope in every hierarchy.
    expected_rel = f"/{driver.roots[ref.paths[0][0]].name}/supd.slice/supd-web.scope"
    assert proc_cgroups(p.pid) == {expected_rel}
    assert driver.pids(ref) == [p.pid]
    stats = driver.stats(ref)
    assert stats.memory_max == 32 << 20 and stats.pids_max == 40 and stats.pids_current == 1
    assert driver.find(spec("web")) == ref
    await driver.remove(ref)
    assert all(not path.exists() for _k, path in ref.paths)
    assert p.wait(timeout=DEADLINE) == -signal.SIGKILL


@pytest.mark.asyncio
async def test_io_weight_and_cpuset_are_applied_or_warned(driver: CgroupfsDriver, layout: Layout, procs: Procs) -> None:
    p = procs.python("import time; time.sleep(600)")
    ref, warnings = await driver.create(spec("io", Resources(io_weight=200, cpuset="0")), p.pid)
    if v1_host(layout):
        assert file_of(ref, "cpuset", "cpuset.cpus") == "0"
        blkio = ref.hierarchy_for("blkio")
        assert blkio is not None
        if (blkio / "blkio.weight").exists() or (blkio / "blkio.bfq.weight").exists():
            weight_file = "blkio.weight" if (blkio / "blkio.weight").exists() else "blkio.bfq.weight"
            assert (blkio / weight_file).read_text().split()[-1] == "1000"
            assert warnings == []
        else:
            assert warnings == ['io: [resources].io_weight: file "blkio.weight" not available; limit not applied']
    else:
        unified = ref.path(UNIFIED)
        assert unified is not None
        assert (unified / "cpuset.cpus").read_text().strip() == "0"
        # io.weight exists only where the kernel has a weight-based io
        # controller (iocost); elsewhere the limit is a warning, not an error.
        if (unified / "io.weight").exists():
            assert "default 200" in (unified / "io.weight").read_text()
            assert warnings == []
        else:
            assert any("[resources].io_weight" in w for w in warnings), warnings
    with open(f"/proc/{p.pid}/status") as f:
        assert "Cpus_allowed_list:\t0\n" in f.read()
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_nested_slice_and_remove_leaves_no_directory(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python("import time; time.sleep(600)")
    ref, _ = await driver.create(spec("api", slice="supd-web-a.slice"), p.pid)
    for _key, path in ref.paths:
        assert path.parts[-4:] == ("supd.slice", "supd-web.slice", "supd-web-a.slice", "supd-api.scope")
    await driver.remove(ref)
    for key, path in ref.paths:
        assert not path.exists()
        assert not path.parent.exists(), "empty unit slice should go"
        assert not path.parent.parent.exists()
        assert (driver.roots[key] / "supd.slice").is_dir(), "supd.slice is kept"


@pytest.mark.asyncio
async def test_memory_max_oom_kills_and_is_counted(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python(
        "chunks = []\nfor _ in range(200):\n    chunks.append(bytearray(1 << 20))\nprint('survived')",
        gated=True,
    )
    ref, _ = await driver.create(spec("hog", Resources(memory_max=32 << 20)), p.pid)
    assert tree.oom_kills(ref) == 0
    procs.go(p)
    assert p.wait(timeout=DEADLINE) == -signal.SIGKILL
    wait_for(lambda: (tree.oom_kills(ref) or 0) >= 1, what="oom_kill count")
    assert driver.stats(ref).oom_kills == tree.oom_kills(ref)
    await driver.remove(ref)


FORK_BOMB = """
import os, time
ok = failed = 0
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    ok += 1
print(ok, failed, flush=True)
time.sleep(600)
"""


@pytest.mark.asyncio
async def test_pids_max_stops_a_fork_bomb(driver: CgroupfsDriver, procs: Procs) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()\n" + FORK_BOMB],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    procs.started.append(p)
    ref, _ = await driver.create(spec("bomb", Resources(pids_max=16)), p.pid)
    procs.go(p)
    assert p.stdout is not None
    ok, failed = map(int, p.stdout.readline().split())
    assert ok == 15 and failed == 64 - 15, (ok, failed)
    assert driver.stats(ref).pids_current == 16
    await driver.kill(ref, signal.SIGKILL)
    assert driver.pids(ref) == []
    p.stdout.close()
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_cpu_quota_holds_a_busy_loop(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python(BUSY_LOOP, gated=True)
    ref, _ = await driver.create(spec("spin", Resources(cpu_quota=0.2)), p.pid)
    procs.go(p)
    time.sleep(0.3)  # let it start spinning
    start_usage, start = cpu_usage_ns(ref), time.monotonic()
    time.sleep(3.0)
    share = (cpu_usage_ns(ref) - start_usage) / ((time.monotonic() - start) * 1e9)
    assert 0.15 <= share <= 0.25, f"busy loop used {share:.3f} of a CPU under a 20% quota"
    await driver.remove(ref)


async def _check_freeze_thaw(ref: CgroupRef, freeze: Callable[[], object], thaw: Callable[[], object]) -> None:
    await freeze()  # type: ignore[misc]
    assert tree.is_frozen(ref)
    unified = ref.path(UNIFIED)
    if unified is not None and (unified / "cgroup.freeze").exists():
        assert "frozen 1" in (unified / "cgroup.events").read_text()
    else:
        assert file_of(ref, "freezer", "freezer.state") == "FROZEN"
    frozen_usage = cpu_usage_ns(ref)
    time.sleep(0.5)
    assert cpu_usage_ns(ref) - frozen_usage < 5_000_000, "a frozen busy loop must not use CPU"
    await thaw()  # type: ignore[misc]
    assert not tree.is_frozen(ref)
    thawed_usage = cpu_usage_ns(ref)
    wait_for(lambda: cpu_usage_ns(ref) - thawed_usage > 50_000_000, what="CPU use after thaw")


@pytest.mark.asyncio
async def test_freeze_stops_cpu_use_and_thaw_resumes(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python(BUSY_LOOP, gated=True)
    ref, _ = await driver.create(spec("ice", Resources(cpu_quota=0.5)), p.pid)
    procs.go(p)
    wait_for(lambda: cpu_usage_ns(ref) > 20_000_000, what="busy loop to run")
    await _check_freeze_thaw(ref, lambda: driver.freeze(ref), lambda: driver.thaw(ref))
    assert driver.stats(ref).frozen is False
    await driver.remove(ref)


@pytest.mark.asyncio
@requires_v1(why="the v1 freezer hierarchy")
async def test_v1_freezer_path_freezes_and_thaws(driver: CgroupfsDriver, layout: Layout, procs: Procs) -> None:
    if layout.v1_for("freezer") is None:
        pytest.skip(f"no v1 freezer hierarchy on this {layout.kind.value} host")
    p = procs.python(BUSY_LOOP, gated=True)
    ref, _ = await driver.create(spec("ice1", Resources(cpu_quota=0.5)), p.pid)
    procs.go(p)
    wait_for(lambda: cpu_usage_ns(ref) > 20_000_000, what="busy loop to run")
    v1_only = CgroupRef(ref.unit, ref.scope, ref.slice, tuple(kp for kp in ref.paths if kp[0] != UNIFIED), ref.driver)
    await _check_freeze_thaw(v1_only, lambda: tree.freeze(v1_only), lambda: tree.thaw(v1_only))
    await driver.remove(ref)


FIFTY = """
import os, signal, time
for i in range(49):
    if os.fork() == 0:
        if i == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
        os._exit(0)
time.sleep(600)
"""


async def _fifty(driver: CgroupfsDriver, procs: Procs, unit: str) -> tuple[CgroupRef, subprocess.Popen[bytes]]:
    p = procs.python(FIFTY, gated=True)
    ref, _ = await driver.create(spec(unit), p.pid)
    procs.go(p)
    wait_for(lambda: len(driver.pids(ref)) == 50, what="50 processes")
    return ref, p


@pytest.mark.asyncio
async def test_kill_all_empties_a_scope_of_fifty(driver: CgroupfsDriver, procs: Procs) -> None:
    ref, p = await _fifty(driver, procs, "fifty")
    await driver.kill(ref, signal.SIGTERM)
    wait_for(lambda: len(driver.pids(ref)) == 1, what="all but the SIGTERM-ignoring child to exit")
    await driver.kill(ref, signal.SIGKILL)
    assert driver.pids(ref) == []
    for _key, path in ref.paths:
        assert (path / "cgroup.procs").read_text() == ""
    assert p.wait(timeout=DEADLINE) == -signal.SIGTERM
    await driver.remove(ref)


@pytest.mark.asyncio
@requires_v1(why="on pure v2 every scope has cgroup.kill, so the freeze-signal-thaw path never runs")
async def test_kill_all_without_cgroup_kill_freezes_signals_thaws(driver: CgroupfsDriver, procs: Procs) -> None:
    ref, p = await _fifty(driver, procs, "fifty1")
    v1_only = CgroupRef(ref.unit, ref.scope, ref.slice, tuple(kp for kp in ref.paths if kp[0] != UNIFIED), ref.driver)
    await tree.kill_all(v1_only, signal.SIGKILL)
    assert tree.pids_in(ref) == []
    assert not tree.is_frozen(v1_only), "kill_all must always thaw"
    p.wait(timeout=DEADLINE)
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_live_update_changes_limits_on_a_running_scope(driver: CgroupfsDriver, layout: Layout, procs: Procs) -> None:
    p = procs.python("import time; time.sleep(600)")
    ref, _ = await driver.create(spec("live", FIVE_LIMITS), p.pid)
    warnings = await driver.update(ref, Resources(memory_max=64 << 20, pids_max=100))
    assert warnings == []
    assert driver.pids(ref) == [p.pid]
    stats = driver.stats(ref)
    assert stats.memory_max == 64 << 20 and stats.pids_max == 100
    assert stats.memory_high is None, "a removed limit is cleared"
    if v1_host(layout):
        assert file_of(ref, "cpu", "cpu.cfs_quota_us") == "-1"
        assert file_of(ref, "cpu", "cpu.shares") == "1024"
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_a_process_that_joins_after_the_kill_does_not_keep_the_scope(driver: CgroupfsDriver, procs: Procs) -> None:
    # An exec or health check whose spawn was under way joins the scope after
    # remove's kill: removing the directories must end it too, not fail on EBUSY.
    first = procs.python("import time; time.sleep(600)")
    ref, _ = await driver.create(spec("late"), first.pid)
    await tree.kill_all(ref, signal.SIGKILL)
    assert first.wait(timeout=DEADLINE) == -signal.SIGKILL
    late = procs.python("import time; time.sleep(600)")
    for _key, path in ref.paths:
        (path / "cgroup.procs").write_text(str(late.pid))
    for _key, path in ref.paths:
        await tree.rmdir_tree(path)
    assert all(not p.exists() for _k, p in ref.paths)
    assert late.wait(timeout=DEADLINE) == -signal.SIGKILL


@pytest.mark.asyncio
async def test_remove_stale_removes_only_unkept_supd_scopes(driver: CgroupfsDriver, procs: Procs) -> None:
    keep_p = procs.python("import time; time.sleep(600)")
    stale_p = procs.python("import time; time.sleep(600)")
    keep_ref, _ = await driver.create(spec("keep"), keep_p.pid)
    stale_ref, _ = await driver.create(spec("stale", slice="supd-batch.slice"), stale_p.pid)
    # Things that are not supd scopes must survive, even inside supd.slice.
    foreign = [root / "supd.slice" / "other.scope" for root in driver.roots.values()]
    foreign += [root / "supd-lookalike.scope" for root in driver.roots.values()]
    for f in foreign:
        f.mkdir()
    try:
        removed = await driver.remove_stale(keep={"keep"}, owned=[stale_ref])
        assert removed == ["supd-stale.scope"]
        assert all(not p.exists() for _k, p in stale_ref.paths)
        assert all(p.is_dir() for _k, p in keep_ref.paths)
        assert all(f.is_dir() for f in foreign)
        assert stale_p.wait(timeout=DEADLINE) == -signal.SIGKILL
        assert keep_p.poll() is None
    finally:
        for f in foreign:
            f.rmdir()
    await driver.remove(keep_ref)


@pytest.mark.asyncio
async def test_remove_stale_leaves_scopes_with_processes_no_record_names(driver: CgroupfsDriver, procs: Procs) -> None:
    # issue 10: a second supd on the same root SIGKILLed the first one's units as "stale"
    theirs_p = procs.python("import time; time.sleep(600)")
    theirs, _ = await driver.create(spec("theirs"), theirs_p.pid)
    empty, _ = await driver.create(spec("empty"), procs.python("pass").pid)
    wait_for(lambda: not driver.pids(empty), what="the empty scope's process to exit")
    removed = await driver.remove_stale(keep=set(), owned=[])
    assert removed == ["supd-empty.scope"]  # nothing runs there: safe to clear
    assert theirs_p.poll() is None and all(p.is_dir() for _k, p in theirs.paths)
    await driver.remove(theirs)


@pytest.mark.asyncio
async def test_create_refuses_a_scope_that_already_holds_processes(driver: CgroupfsDriver, procs: Procs) -> None:
    stranger = procs.python("import time; time.sleep(600)")
    occupied, _ = await driver.create(spec("web"), stranger.pid)
    newcomer = procs.python("import time; time.sleep(600)")
    with pytest.raises(CgroupError, match=rf"unit web: the scope already holds processes .*pids \[{stranger.pid}\]"):
        await driver.create(spec("web"), newcomer.pid)
    assert str(stranger.pid) in (occupied.paths[0][1] / "cgroup.procs").read_text().split()
    assert not any("supd-web.scope" in c for c in proc_cgroups(newcomer.pid))  # nothing half-joined
    await driver.remove(occupied)


@pytest.mark.asyncio
async def test_stats_report_usage(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python("b = bytearray(8 << 20)\nimport time; time.sleep(600)", gated=True)
    ref, _ = await driver.create(spec("stat", Resources(memory_max=64 << 20)), p.pid)
    procs.go(p)
    wait_for(lambda: (driver.stats(ref).memory_current or 0) >= 8 << 20, what="8 MiB charged")
    s = driver.stats(ref)
    assert s.memory_peak is not None and s.memory_peak >= 8 << 20
    assert s.pids_current == 1 and s.oom_kills == 0 and s.frozen is False
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_unified_code_path_warns_for_missing_controllers(layout: Layout, unique_name: str, no_leaks: None, procs: Procs) -> None:
    """Drive the pure-v2 path on this host's cgroup2 mount. On a hybrid host it
    has no memory/pids controllers, so limits turn into warnings and the unit still runs."""
    if layout.unified is None:
        pytest.skip("no cgroup2 mount")
    v2 = Layout(LayoutKind.UNIFIED, layout.unified.mount, (), layout.unified)
    driver = CgroupfsDriver(v2, "/" + unique_name)
    p = procs.python("import time; time.sleep(600)")
    try:
        ref, warnings = await driver.create(spec("v2", Resources(memory_max=32 << 20, pids_max=8)), p.pid)
        available = set((driver.roots[UNIFIED] / "cgroup.controllers").read_text().split())
        if "memory" not in available:
            assert 'v2: [resources].memory_max: controller "memory" not available; limit not applied' in warnings
        assert proc_cgroups(p.pid) >= {f"/{unique_name}/supd.slice/supd-v2.scope"}
        await driver.kill(ref, signal.SIGKILL)
        assert p.wait(timeout=DEADLINE) == -signal.SIGKILL
        await driver.remove(ref)
    finally:
        await tree.rmdir_tree(driver.roots[UNIFIED])


@pytest.mark.asyncio
async def test_unified_root_holding_processes_is_evacuated_to_a_leaf(
    layout: Layout, unique_name: str, no_leaks: None, procs: Procs
) -> None:
    """v2's no-internal-processes rule: when supd's own cgroup is the root it is
    handed, supd's processes move into supd-daemon.scope before the slices appear."""
    if layout.unified is None:
        pytest.skip("no cgroup2 mount")
    v2 = Layout(LayoutKind.UNIFIED, layout.unified.mount, (), layout.unified)
    driver = CgroupfsDriver(v2, "/" + unique_name)
    root = driver.roots[UNIFIED]
    resident = procs.python("import time; time.sleep(600)")
    unit = procs.python("import time; time.sleep(600)")
    root.mkdir()
    try:
        (root / "cgroup.procs").write_text(str(resident.pid))
        ref, _ = await driver.create(spec("evac"), unit.pid)
        assert tree.procs(root) == []
        assert tree.procs(root / "supd-daemon.scope") == [resident.pid]
        assert tree.pids_in(ref) == [unit.pid]
        await driver.remove(ref)
    finally:
        for cg in tree.walk(root):
            tree.signal_pids(tree.procs(cg), signal.SIGKILL)
        resident.wait(timeout=DEADLINE)
        unit.wait(timeout=DEADLINE)
        await tree.rmdir_tree(root, attempts=12)


@pytest.mark.asyncio
async def test_create_for_a_gone_pid_fails_and_leaves_nothing(driver: CgroupfsDriver) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(CgroupError, match="cgroup.procs") as e:
        await driver.create(spec("ghost", FIVE_LIMITS), gone.pid)
    assert e.value.data == str(gone.pid)
    assert all(not (root / "supd.slice").exists() for root in driver.roots.values())


@pytest.mark.asyncio
async def test_sigkill_reaches_a_frozen_scope(driver: CgroupfsDriver, procs: Procs) -> None:
    ref, p = await _fifty(driver, procs, "frozen-kill")
    await driver.freeze(ref)
    await driver.kill(ref, signal.SIGKILL)
    assert driver.pids(ref) == []
    p.wait(timeout=DEADLINE)
    await driver.remove(ref)


@pytest.mark.asyncio
async def test_bad_cpuset_is_an_error_naming_file_and_value(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python("import time; time.sleep(600)")
    before = proc_cgroups(p.pid)
    with pytest.raises(CgroupError, match="cpuset.cpus") as e:
        await driver.create(spec("badcpu", Resources(cpuset="4096")), p.pid)
    assert e.value.data == "4096"
    assert proc_cgroups(p.pid) == before, "a failed create places nothing"
    assert all(not path.exists() for _k, path in driver._scope_paths(spec("badcpu"))), "nor leaves a scope"


@pytest.mark.asyncio
async def test_aclose_removes_empty_slices_and_the_root_it_made(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python("import time; time.sleep(60)")
    ref, _ = await driver.create(spec("gone", slice="supd-batch.slice"), p.pid)
    await driver.remove(ref)  # kills what is left in the scope
    assert all(root.exists() for root in driver.roots.values())
    await driver.aclose()
    assert not any(root.exists() for root in driver.roots.values())


@pytest.mark.asyncio
async def test_aclose_keeps_a_root_that_was_there_before(layout: Layout, unique_name: str, no_leaks: None) -> None:
    first = CgroupfsDriver(layout, "/" + unique_name)
    for root in first.roots.values():
        root.mkdir()
    try:
        second = CgroupfsDriver(layout, "/" + unique_name)
        await second.aclose()
        assert all(root.exists() for root in second.roots.values())
    finally:
        for root in first.roots.values():
            root.rmdir()


# The same CPU for both, so they compete; each reads its own share.
COMPETE = Resources(cpuset="0")


@pytest.mark.asyncio
async def test_cpu_weight_divides_a_contended_cpu(driver: CgroupfsDriver, procs: Procs) -> None:
    """cpu_weight 300 against 100 on one CPU: about three quarters against one.
    (v2 cpu.weight; v1 cpu.shares through systemd's conversion.)"""
    heavy_p, light_p = procs.python(BUSY_LOOP, gated=True), procs.python(BUSY_LOOP, gated=True)
    heavy, _ = await driver.create(spec("heavy", Resources(cpu_weight=300, cpuset="0")), heavy_p.pid)
    light, _ = await driver.create(spec("light", Resources(cpu_weight=100, cpuset="0")), light_p.pid)
    procs.go(heavy_p)
    procs.go(light_p)
    time.sleep(0.5)
    h0, l0 = cpu_usage_ns(heavy), cpu_usage_ns(light)
    time.sleep(3.0)
    h, l = cpu_usage_ns(heavy) - h0, cpu_usage_ns(light) - l0
    ratio = h / max(l, 1)
    assert 2.0 <= ratio <= 4.5, f"weights 300:100 gave CPU {h / 1e6:.0f} ms : {l / 1e6:.0f} ms (ratio {ratio:.2f})"
    await driver.remove(heavy)
    await driver.remove(light)


@pytest.mark.asyncio
async def test_cpuset_pins_the_process(driver: CgroupfsDriver, procs: Procs) -> None:
    if ncpus() < 2:
        pytest.skip("needs two CPUs to tell a pinned process from an unpinned one")
    p = procs.python("import time; time.sleep(600)")
    ref, warnings = await driver.create(spec("pin", Resources(cpuset="1")), p.pid)
    assert not [w for w in warnings if "cpuset" in w], warnings
    assert os.sched_getaffinity(p.pid) == {1}
    await driver.update(ref, Resources())
    wait_for(lambda: len(os.sched_getaffinity(p.pid)) == ncpus(), what="the cpuset cleared on update")
    await driver.remove(ref)


@pytest.mark.asyncio
@requires_unified(why="memory.high throttles and counts only on cgroup v2 (v1 has a soft limit)")
async def test_memory_high_throttles_without_killing(driver: CgroupfsDriver, procs: Procs) -> None:
    p = procs.python(
        "import sys, time\nchunks = [bytearray(1 << 20) for _ in range(48)]\nprint('allocated', flush=True)\ntime.sleep(600)",
        gated=True,
    )
    ref, _ = await driver.create(spec("high", Resources(memory_high=16 << 20, memory_max=256 << 20)), p.pid)
    unified = ref.path(UNIFIED)
    assert unified is not None
    procs.go(p)
    wait_for(lambda: int(tree.keyed((unified / "memory.events").read_text()).get("high", "0")) > 0, what="memory.high events")
    assert p.poll() is None, "memory.high throttles and reclaims, it never kills"
    assert tree.oom_kills(ref) == 0
    await driver.remove(ref)


@pytest.mark.asyncio
@requires_unified(why="cgroup.kill and cgroup.freeze of the unified hierarchy are the only kill and freeze there")
async def test_v2_kill_and_freeze_go_through_the_cgroup_files(driver: CgroupfsDriver, procs: Procs) -> None:
    ref, p = await _fifty(driver, procs, "v2files")
    unified = ref.path(UNIFIED)
    assert unified is not None and (unified / "cgroup.kill").exists()
    await driver.freeze(ref)
    assert (unified / "cgroup.freeze").read_text().strip() == "1"
    assert "frozen 1" in (unified / "cgroup.events").read_text()
    await driver.thaw(ref)
    assert "frozen 0" in (unified / "cgroup.events").read_text()
    await driver.kill(ref, signal.SIGKILL)
    assert "populated 0" in (unified / "cgroup.events").read_text()
    p.wait(timeout=DEADLINE)
    await driver.remove(ref)


@pytest.mark.asyncio
@requires_unified(why="controller delegation along the path is a cgroup v2 rule")
async def test_controllers_are_enabled_from_the_mount_root_down(driver: CgroupfsDriver, layout: Layout, procs: Procs) -> None:
    """The mount root of a systemd host delegates only what systemd needs
    (often just memory and pids): supd enables the rest on the whole path."""
    p = procs.python("import time; time.sleep(600)")
    ref, warnings = await driver.create(spec("chain", Resources(cpu_quota=0.2, cpuset="0", pids_max=8)), p.pid)
    assert not [w for w in warnings if "cpu_quota" in w or "cpuset" in w or "pids_max" in w], warnings
    unified = ref.path(UNIFIED)
    assert unified is not None
    mount = layout.unified.mount if layout.unified else None
    assert mount is not None
    level = unified.parent
    while True:
        enabled = set((level / "cgroup.subtree_control").read_text().split())
        assert {"cpu", "cpuset", "pids"} <= enabled, f"{level}: {enabled}"
        if level == mount:
            break
        level = level.parent
    await driver.remove(ref)


@pytest.mark.asyncio
@requires_unified(why="the no-internal-processes rule is cgroup v2's")
async def test_concurrent_creates_in_an_occupied_root_all_succeed(layout: Layout, unique_name: str, no_leaks: None, procs: Procs) -> None:
    """supd under systemd: its own cgroup is the root and holds supd. Several
    units starting at once must not race the move of supd's processes."""
    import anyio

    driver = CgroupfsDriver(layout, "/" + unique_name)
    root = driver.roots[UNIFIED]
    resident = procs.python("import time; time.sleep(600)")
    units = [procs.python("import time; time.sleep(600)") for _ in range(6)]
    root.mkdir()
    refs: list[CgroupRef] = []
    try:
        (root / "cgroup.procs").write_text(str(resident.pid))

        async def start(i: int) -> None:
            ref, _ = await driver.create(spec(f"c{i}", Resources(cpu_quota=0.5, memory_max=64 << 20)), units[i].pid)
            refs.append(ref)

        async with anyio.create_task_group() as tg:
            for i in range(len(units)):
                tg.start_soon(start, i)
        assert len(refs) == len(units)
        assert tree.procs(root) == []
        assert tree.procs(root / "supd-daemon.scope") == [resident.pid]
        for ref in refs:
            await driver.remove(ref)
    finally:
        for cg in tree.walk(root):
            tree.signal_pids(tree.procs(cg), signal.SIGKILL)
        resident.wait(timeout=DEADLINE)
        for u in units:
            u.wait(timeout=DEADLINE)
        await tree.rmdir_tree(root, attempts=12)
