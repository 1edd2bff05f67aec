"""Containers and exec-into through the spawner, for real: namespaces,
overlay, pivot_root, identity, capabilities (root)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Pending, Spawner, SpawnError
from supervisor.runtime.spec import Bind, ContainerSpec, JoinSpec, RootfsMount, SpawnSpec
from tests.conftest import requires_root
from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.cgroups import ThrowawayCgroup
from tests.layouts import host_layout

pytestmark = [requires_root, pytest.mark.root]

DEADLINE = 30.0
TINI = "/usr/bin/tini-static"
# podman's default set: docker's 0xA80425FB minus NET_RAW (13), MKNOD (27), AUDIT_WRITE (29)
PODMAN_DEFAULT_CAPS = 0x00000000A80405FB
PODMAN_CAPS = tuple(n for n in range(64) if PODMAN_DEFAULT_CAPS >> n & 1)
MINIMAL_DEV = {"fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
               "stderr", "stdin", "stdout", "tty", "urandom", "zero"}


@dataclass(frozen=True)
class Layers:
    base: Path  # busybox
    top: Path  # adds /hello
    upper: Path
    work: Path
    target: Path

    def mount(self, **kwargs: object) -> RootfsMount:
        return RootfsMount(lowerdirs=(str(self.base), str(self.top)), upperdir=str(self.upper),
                           workdir=str(self.work), target=str(self.target), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "layer")


@pytest.fixture
def layers(tmp_path: Path, busybox_layer: Path) -> Layers:
    top = tmp_path / "top"
    top.mkdir()
    (top / "hello").write_text("from the top layer\n")
    for name in ("upper", "work", "rootfs"):
        (tmp_path / name).mkdir()
    return Layers(busybox_layer, top, tmp_path / "upper", tmp_path / "work", tmp_path / "rootfs")


class Output:
    """A pipe the process writes to; read after it exited."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()

    def stdio(self) -> tuple[int, int, int]:
        return (0, self.write_end, self.write_end)

    def text(self) -> str:
        os.close(self.write_end)
        data = b""
        while chunk := os.read(self.read_end, 65536):
            data += chunk
        os.close(self.read_end)
        return data.decode()


async def start(spawner: Spawner, spec: SpawnSpec, out: Output) -> Pending:
    pending = await spawner.spawn(spec, stdio=out.stdio())
    await pending.go()
    return pending


@contextlib.asynccontextmanager
async def running(spawner: Spawner, reaper: Reaper, spec: SpawnSpec) -> AsyncIterator[Pending]:
    """A container kept running for the block (to exec into it), then
    SIGKILLed and reaped, whatever the block did."""
    out = Output()
    main = await start(spawner, spec, out)
    try:
        yield main
    finally:
        os.kill(main.pid, signal.SIGKILL)
        with anyio.fail_after(DEADLINE):
            await reaper.wait(main.pid)
        out.text()


async def run(spawner: Spawner, reaper: Reaper, spec: SpawnSpec) -> tuple[object, str]:
    out = Output()
    try:
        pending = await start(spawner, spec, out)
        with anyio.fail_after(DEADLINE):
            status = await reaper.wait(pending.pid)
    finally:
        text = out.text()
    return status, text


def in_box(layers: Layers, script: str, user: str | None = None, caps: tuple[int, ...] | None = PODMAN_CAPS,
           seccomp: bytes | None = None, **container: object) -> SpawnSpec:
    container.setdefault("rootfs", layers.mount())
    container.setdefault("hostname", "box")
    return SpawnSpec(argv=("/bin/sh", "-c", script), user=user, caps=caps, seccomp=seccomp,
                     container=ContainerSpec(**container))  # type: ignore[arg-type]


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@pytest.mark.asyncio
async def test_command_is_pid_1_and_sees_only_its_processes(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, in_box(layers, "echo $$; ps -o pid,comm > /tmp/ps; cat /tmp/ps"))
    assert status.code == 0, out
    pid, _header, *processes = out.splitlines()
    assert pid == "1"
    assert sorted(p.split()[1] for p in processes) == ["ps", "sh"]


@pytest.mark.asyncio
async def test_hostname_and_merged_root(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, in_box(layers, "hostname; cat /hello; echo written > /new; ls /bin/busybox"))
    assert status.code == 0, out
    assert out.splitlines() == ["box", "from the top layer", "/bin/busybox"]
    assert (layers.upper / "new").read_text() == "written\n"
    assert not (layers.top / "new").exists()
    assert not mounted(layers.target)  # the overlay lived only in the container's namespace


@pytest.mark.asyncio
async def test_proc_sys_and_dev_are_confined(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)][0]
    script = (
        f"wc -c < {masked}; "
        "mkdir /sys/fs/supdtest 2>/dev/null && echo sys-writable || echo sys-readonly; "
        "(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo procsys-writable || echo procsys-readonly; "
        "ls /dev"
    )
    status, out = await run(spawner, reaper, in_box(layers, script))
    assert status.code == 0, out
    lines = out.split()
    assert lines[:3] == ["0", "sys-readonly", "procsys-readonly"]
    assert set(lines[3:]) == MINIMAL_DEV


@pytest.mark.asyncio
async def test_devices_work(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    script = "head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok; ls /dev/pts"
    status, out = await run(spawner, reaper, in_box(layers, script))
    assert status.code == 0, out
    assert out.split()[:3] == ["4", "4", "null-ok"]
    assert "ptmx" in out.split()[3:]


@pytest.mark.asyncio
async def test_user_from_the_containers_passwd(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, in_box(layers, 'echo "$(id -u) $(id -g) $HOME"', user="nobody"))
    assert status.code == 0, out
    assert out.split() == ["65534", "65534", "/nonexistent"]
    status, out = await run(spawner, reaper, in_box(layers, "id -G", user="app"))
    assert sorted(out.split()) == ["10", "1000"]  # app is in wheel


@pytest.mark.asyncio
async def test_unknown_user_in_container(spawner: Spawner, layers: Layers) -> None:
    with pytest.raises(SpawnError, match='user "bob" not in /etc/passwd'):
        await spawner.spawn(in_box(layers, "true", user="bob"), stdio=(0, 1, 2))
    assert not mounted(layers.target)


@pytest.mark.asyncio
async def test_missing_binary_in_container(spawner: Spawner, layers: Layers) -> None:
    spec = SpawnSpec(argv=("/bin/nope",), container=ContainerSpec(rootfs=layers.mount()))
    with pytest.raises(SpawnError, match="exec /bin/nope: No such file or directory"):
        await spawner.spawn(spec, stdio=(0, 1, 2))


@pytest.mark.asyncio
async def test_bad_overlay_is_a_spawn_error_naming_the_mount(spawner: Spawner, layers: Layers, tmp_path: Path) -> None:
    bad = RootfsMount(lowerdirs=(str(tmp_path / "missing"), str(layers.top)), upperdir=str(layers.upper),
                      workdir=str(layers.work), target=str(layers.target))
    with pytest.raises(SpawnError, match=f"mount overlay on {layers.target}: layer {tmp_path}/missing"):
        await spawner.spawn(in_box(layers, "true", rootfs=bad), stdio=(0, 1, 2))


@pytest.mark.asyncio
async def test_no_new_privs_and_the_capabilities_of_the_spec(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, in_box(layers, "grep -e NoNewPrivs -e CapBnd -e CapEff -e CapInh /proc/self/status"))
    assert status.code == 0, out
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields["NoNewPrivs"] == "1"
    assert int(fields["CapBnd"], 16) == PODMAN_DEFAULT_CAPS
    assert int(fields["CapEff"], 16) == PODMAN_DEFAULT_CAPS
    assert int(fields["CapInh"], 16) & ~PODMAN_DEFAULT_CAPS == 0
    status, out = await run(spawner, reaper, in_box(layers, "grep CapEff /proc/self/status", user="nobody"))
    assert int(out.split()[1], 16) == 0


@pytest.mark.asyncio
async def test_network_none_has_only_loopback_up(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, in_box(layers, "ls /sys/class/net; cat /sys/class/net/lo/flags", network="none"))
    assert status.code == 0, out
    names_and_flags = out.split()
    assert names_and_flags[:-1] == ["lo"]
    assert int(names_and_flags[-1], 16) & 0x1  # IFF_UP


@pytest.mark.asyncio
async def test_binds_readonly_and_writable(spawner: Spawner, reaper: Reaper, layers: Layers, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data").write_text("ro data\n")
    binds = (Bind(str(ro), "/srv/ro", readonly=True), Bind(str(rw), "/srv/rw"))
    script = "cat /srv/ro/data; (touch /srv/ro/x) 2>/dev/null && echo ro-writable || echo ro-readonly; touch /srv/rw/x"
    status, out = await run(spawner, reaper, in_box(layers, script, binds=binds))
    assert status.code == 0, out
    assert out.splitlines() == ["ro data", "ro-readonly"]
    assert (rw / "x").exists() and not (ro / "x").exists()


@pytest.mark.asyncio
async def test_readonly_root(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    rootfs = RootfsMount(lowerdirs=(str(layers.base),), target=str(layers.target), readonly=True)
    script = "(touch /x) 2>/dev/null && echo writable || echo readonly; echo ok > /dev/shm/x && cat /dev/shm/x"
    status, out = await run(spawner, reaper, in_box(layers, script, rootfs=rootfs))
    assert status.code == 0, out
    assert out.split() == ["readonly", "ok"]


@pytest.mark.asyncio
@pytest.mark.skipif(not os.path.exists(TINI), reason="tini-static not installed")
async def test_init_is_pid_1_and_the_command_pid_2(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, in_box(layers, "echo $$; tr '\\0' ' ' < /proc/1/cmdline; exit 3", init=TINI))
    assert status.code == 3, out  # tini passes the exit code through
    pid, cmdline = out.split("\n", 1)
    assert pid == "2"
    assert cmdline.split()[:3] == ["/dev/init", "--", "/bin/sh"]


@pytest.mark.asyncio
async def test_overlay_with_120_layers(spawner: Spawner, reaper: Reaper, layers: Layers, tmp_path: Path) -> None:
    store = tmp_path / "l"
    store.mkdir()
    names = []
    for i in range(120):
        layer = store / str(i)
        layer.mkdir()
        (layer / f"f{i}").write_text(f"{i}\n")
        (layer / "same").write_text(f"{i}\n")
        names.append(str(i))
    # the busybox layer is the lowest one, by absolute path
    rootfs = RootfsMount(lowerdirs=(str(layers.base), *names), upperdir=str(layers.upper),
                         workdir=str(layers.work), target=str(layers.target), chdir=str(store))
    status, out = await run(spawner, reaper, in_box(layers, "cat /f0 /f119 /same", rootfs=rootfs))
    assert status.code == 0, out
    assert out.split() == ["0", "119", "119"]  # the last (top) layer wins


@pytest.mark.asyncio
async def test_cgroup_namespace_is_rooted_where_the_daemon_placed_it(
    spawner: Spawner, reaper: Reaper, layers: Layers, unique_name: str
) -> None:
    with ThrowawayCgroup(unique_name, "pids") as cgroup:
        out = Output()
        pending = await spawner.spawn(in_box(layers, f"grep {pids_line_tag()} /proc/self/cgroup"), stdio=out.stdio())
        cgroup.add(pending.pid)
        await pending.go()
        with anyio.fail_after(DEADLINE):
            status = await reaper.wait(pending.pid)
        text = out.text()
    assert status.code == 0, text
    assert text.strip().endswith(":/"), text  # the container sees its cgroup as its root


@pytest.mark.asyncio
async def test_exec_into_a_running_container(
    spawner: Spawner, reaper: Reaper, layers: Layers, unique_name: str
) -> None:
    with ThrowawayCgroup(unique_name, "pids") as cgroup:
        main_out = Output()
        main = await spawner.spawn(in_box(layers, "echo inside > /tmp/mark; exec sleep 1000"), stdio=main_out.stdio())
        cgroup.add(main.pid)
        await main.go()
        try:
            await wait_for_file(layers.upper / "tmp" / "mark")
            join = JoinSpec(pid=main.pid, cgroup_procs=(str(cgroup.procs_file),))
            script = f"hostname; cat /tmp/mark /hello; echo $$; grep {pids_line_tag()} /proc/self/cgroup; id -u; exit 5"
            spec = SpawnSpec(argv=("/bin/sh", "-c", script), user="nobody", join=join)
            status, out = await run(spawner, reaper, spec)
            assert (status.code, status.signal) == (5, None), out
            hostname, mark, hello, pid, pids_line, uid = out.splitlines()
            assert (hostname, mark, hello) == ("box", "inside", "from the top layer")
            assert int(pid) > 1
            assert pids_line.endswith(":/"), pids_line
            assert uid == "65534"
        finally:
            os.kill(main.pid, signal.SIGKILL)
            with anyio.fail_after(DEADLINE):
                status = await reaper.wait(main.pid)
            main_out.text()
    assert status.signal == signal.SIGKILL
    assert not mounted(layers.target)


@pytest.mark.asyncio
async def test_exec_into_relays_signals_and_dies_with_the_container(
    spawner: Spawner, reaper: Reaper, layers: Layers
) -> None:
    main_out, exec_out = Output(), Output()
    main = await start(spawner, in_box(layers, "exec sleep 1000"), main_out)
    try:
        spec = SpawnSpec(argv=("/bin/sleep", "1000"), join=JoinSpec(pid=main.pid))
        session = await start(spawner, spec, exec_out)
        os.kill(session.pid, signal.SIGTERM)  # the relay forwards it to the command
        with anyio.fail_after(DEADLINE):
            status = await reaper.wait(session.pid)
        assert status.signal == signal.SIGTERM
        session = await start(spawner, spec, Output())
    finally:
        os.kill(main.pid, signal.SIGKILL)
        with anyio.fail_after(DEADLINE):
            await reaper.wait(main.pid)
    # pid 1 gone: the kernel kills the namespace, the relay passes that on
    with anyio.fail_after(DEADLINE):
        status = await reaper.wait(session.pid)
    assert status.signal == signal.SIGKILL
    main_out.text()
    exec_out.text()
    assert not mounted(layers.target)


async def wait_for_file(path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        while not path.exists():
            await anyio.sleep(0.02)


def pids_line_tag() -> str:
    """What marks the pids hierarchy's line in /proc/self/cgroup: "pids" on v1,
    the unified line "0::" on pure v2."""
    return "0::" if host_layout().unified is not None and host_layout().v1_for("pids") is None else ":pids:"
