"""Spawner + Reaper for plain host processes, for real (root)."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import anyio
import pytest

from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner, SpawnError
from supervisor.runtime.spec import SpawnSpec
from tests.conftest import requires_root
from tests.unit.test_runtime_shim_identity import load_shim

pytestmark = [requires_root, pytest.mark.root]

DEADLINE = 30.0
SHIM = load_shim()  # for its raw rt_sigaction


async def run(spawner: Spawner, reaper: Reaper, spec: SpawnSpec) -> tuple[object, str]:
    """spawn → go → wait; (ExitStatus, stdout+stderr)."""
    read_end, write_end = os.pipe()
    try:
        pending = await spawner.spawn(spec, stdio=(0, write_end, write_end))
    finally:
        os.close(write_end)
    try:
        await pending.go()
        with anyio.fail_after(DEADLINE):
            status = await reaper.wait(pending.pid)
        output = b""
        while chunk := os.read(read_end, 65536):
            output += chunk
    finally:
        os.close(read_end)
    return status, output.decode()


def sh(script: str, **kwargs: object) -> SpawnSpec:
    return SpawnSpec(argv=("/bin/sh", "-c", script), **kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_exit_code_passes_through(spawner: Spawner, reaper: Reaper) -> None:
    status, _ = await run(spawner, reaper, sh("exit 7"))
    assert (status.code, status.signal, status.reason) == (7, None, "exit 7")


@pytest.mark.asyncio
async def test_death_by_signal_is_reported(spawner: Spawner, reaper: Reaper) -> None:
    status, _ = await run(spawner, reaper, sh("kill -9 $$"))
    assert (status.code, status.signal, status.reason) == (None, 9, "signal SIGKILL")


@pytest.mark.asyncio
async def test_env_and_cwd(spawner: Spawner, reaper: Reaper, tmp_path: Path) -> None:
    spec = sh('echo "$FOO|$PWD|$HOME"', env=(("FOO", "bar baz"), ("HOME", "/h")), cwd=str(tmp_path))
    status, out = await run(spawner, reaper, spec)
    assert status.code == 0
    assert out == f"bar baz|{tmp_path}|/h\n"


@pytest.mark.asyncio
async def test_command_found_in_the_units_path(spawner: Spawner, reaper: Reaper, tmp_path: Path) -> None:
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    spec = SpawnSpec(argv=("mytool",), env=(("PATH", f"/nonexistent:{tmp_path}"),))
    status, out = await run(spawner, reaper, spec)
    assert (status.code, out) == (0, "found\n")


@pytest.mark.asyncio
async def test_user_by_name_from_host_passwd(spawner: Spawner, reaper: Reaper) -> None:
    status, out = await run(spawner, reaper, sh('echo "$(id -u) $(id -g) $HOME"', user="nobody"))
    assert status.code == 0
    assert out.split()[:2] == ["65534", "65534"]


@pytest.mark.asyncio
async def test_user_uid_and_gid(spawner: Spawner, reaper: Reaper) -> None:
    status, out = await run(spawner, reaper, sh('echo "$(id -u) $(id -g) $(id -G)"', user="1000:1000"))
    assert status.code == 0
    assert out.split() == ["1000", "1000", "1000"]


@pytest.mark.asyncio
async def test_unknown_user_is_a_spawn_error(spawner: Spawner, reaper: Reaper) -> None:
    with pytest.raises(SpawnError, match='user "nosuchuser" not in /etc/passwd'):
        await spawner.spawn(sh("true", user="nosuchuser"), stdio=(0, 1, 2))


@pytest.mark.asyncio
async def test_missing_binary_names_it(spawner: Spawner, reaper: Reaper) -> None:
    with pytest.raises(SpawnError, match="exec /nonexistent/prog: No such file or directory"):
        await spawner.spawn(SpawnSpec(argv=("/nonexistent/prog",)), stdio=(0, 1, 2))
    with pytest.raises(SpawnError, match="exec no-such-prog: No such file or directory"):
        await spawner.spawn(SpawnSpec(argv=("no-such-prog",)), stdio=(0, 1, 2))


@pytest.mark.asyncio
async def test_exec_failure_after_go_is_reported(spawner: Spawner, reaper: Reaper, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program")
    garbage.chmod(0o755)
    pending = await spawner.spawn(SpawnSpec(argv=(str(garbage),)), stdio=(0, 1, 2))
    with pytest.raises(SpawnError, match=f"exec {garbage}: Exec format error"):
        await pending.go()
    await pending.abort()  # idempotent after a failure
    assert not Path(f"/proc/{pending.pid}").exists()


@pytest.mark.asyncio
async def test_pending_process_is_our_child_and_waits_for_go(spawner: Spawner, reaper: Reaper, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pending = await spawner.spawn(sh(f"touch {marker}"), stdio=(0, 1, 2))
    stat_fields = Path(f"/proc/{pending.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat_fields[1]) == os.getpid()  # ppid: we are the subreaper it landed on
    assert int(stat_fields[3]) == pending.pid  # setsid: its own session
    assert not marker.exists()
    await pending.go()
    with anyio.fail_after(DEADLINE):
        status = await reaper.wait(pending.pid)
    assert status.code == 0 and marker.exists()


@pytest.mark.asyncio
async def test_abort_before_go_kills_and_reaps(spawner: Spawner, reaper: Reaper, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pending = await spawner.spawn(sh(f"touch {marker}"), stdio=(0, 1, 2))
    await pending.abort()
    assert not Path(f"/proc/{pending.pid}").exists()
    assert not marker.exists()


@pytest.mark.asyncio
async def test_no_new_privs_and_umask(spawner: Spawner, reaper: Reaper) -> None:
    spec = sh("grep NoNewPrivs /proc/self/status; umask", no_new_privs=True, umask=0o027)
    status, out = await run(spawner, reaper, spec)
    assert status.code == 0
    assert out.split() == ["NoNewPrivs:", "1", "0027"]


@pytest.mark.asyncio
async def test_only_stdio_is_inherited(spawner: Spawner, reaper: Reaper) -> None:
    status, out = await run(spawner, reaper, sh("ls /proc/self/fd"))
    # 0 1 2, and the fd ls opened to read the directory
    assert status.code == 0
    assert set(out.split()) <= {"0", "1", "2", "3"}


@pytest.mark.asyncio
async def test_double_forked_orphans_are_reaped(spawner: Spawner, reaper: Reaper) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(reaper.run)
        # the grandchild outlives its parent and lands on us (the subreaper)
        status, out = await run(spawner, reaper, sh('sh -c "sleep 0.3 >/dev/null 2>&1 & echo \\$!"'))
        assert status.code == 0
        orphan = int(out)
        with anyio.fail_after(DEADLINE):
            while Path(f"/proc/{orphan}").exists():
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert not zombie_children()


def zombie_children() -> list[int]:
    zombies = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            if state == "Z":
                zombies.append(int(pid))
    return zombies


@pytest.mark.asyncio
async def test_wait_on_a_zombie_and_many_waiters(spawner: Spawner, reaper: Reaper) -> None:
    pending = await spawner.spawn(sh("exit 4"), stdio=(0, 1, 2))
    await pending.go()
    with anyio.fail_after(DEADLINE):
        while Path(f"/proc/{pending.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            await anyio.sleep(0.02)
    results: list[object] = []

    async def waiter() -> None:
        results.append(await reaper.wait(pending.pid))

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(waiter)
    assert [r.code for r in results] == [4] * 5  # type: ignore[attr-defined]
    assert not Path(f"/proc/{pending.pid}").exists()


@pytest.mark.asyncio
async def test_many_concurrent_spawns(spawner: Spawner, reaper: Reaper) -> None:
    count = 200
    codes: list[int | None] = []

    async def one(i: int) -> None:
        status, _ = await run(spawner, reaper, sh(f"exit {i % 50}"))
        codes.append(status.code)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, i)
    assert sorted(c for c in codes if c is not None) == sorted(i % 50 for i in range(count))


@pytest.mark.asyncio
async def test_spawner_is_relaunched_after_it_died(spawner: Spawner, reaper: Reaper) -> None:
    old = spawner.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    with anyio.fail_after(DEADLINE):
        while stat.S_ISDIR(os.stat(f"/proc/{old}").st_mode) and _state(old) != "Z":
            await anyio.sleep(0.02)
    status, out = await run(spawner, reaper, sh("echo again"))
    assert (status.code, out) == (0, "again\n")
    assert spawner.pid != old


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.asyncio
async def test_wait_on_a_process_that_is_not_our_child(spawner: Spawner, reaper: Reaper) -> None:
    # like a unit re-adopted after a daemon restart: the pidfd says when it ends
    read_end, write_end = os.pipe()
    pending = await spawner.spawn(sh("sleep 0.3 & echo $!; wait"), stdio=(0, write_end, write_end))
    os.close(write_end)
    await pending.go()
    with anyio.fail_after(DEADLINE):
        await anyio.wait_readable(read_end)
    grandchild = int(os.read(read_end, 100))
    os.close(read_end)
    with anyio.fail_after(DEADLINE):
        status = await reaper.wait(grandchild)
        assert (status.code, status.signal) == (None, None)
        assert "not our child" in status.reason
        assert (await reaper.wait(pending.pid)).code == 0


@pytest.mark.asyncio
async def test_signals_ignored_where_supd_was_started_are_not_passed_on(reaper: Reaper, no_leaks: None) -> None:
    """`nohup supd &` ignores SIGHUP, and a shell's background job SIGINT and
    SIGQUIT; ignored signals survive exec, so a unit would not hear its stop
    signal. Every signal is back to its default in what supd starts."""
    ignored = (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in ignored}
    # 32 is glibc's, out of the signal module's reach, and a CI runner was
    # seen to start its jobs with it ignored
    before_32 = SHIM.set_raw_disposition(32, int(signal.SIG_IGN))
    try:
        spawner = Spawner.launch(reaper)  # inherits the ignored signals, as from nohup
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if before_32 is not None:
            SHIM.set_raw_disposition(32, before_32)
    try:
        status, out = await run(spawner, reaper, sh("grep -E '^Sig(Ign|Blk)' /proc/self/status"))
    finally:
        spawner.close()
    assert status.code == 0
    assert out.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16], out
