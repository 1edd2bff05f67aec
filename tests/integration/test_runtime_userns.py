"""User namespaces through the spawner, for real (root): maps written from
outside, id-mapped lower layers, files owned by the mapped ids on the host,
and container root powerless over the host even with every capability in
its user namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner, SpawnError
from supervisor.runtime.spec import Bind, ContainerSpec, JoinSpec, RootfsMount, SpawnSpec, UserNamespace
from tests.conftest import requires_root
from tests.integration.test_runtime_container import (  # noqa: F401 - fixtures
    DEADLINE,
    TINI,
    Layers,
    Output,
    busybox_layer,
    in_box,
    layers,
    mounted,
    run,
    running,
    wait_for_file,
)

pytestmark = [requires_root, pytest.mark.root]

START = 3_000_000  # far from any real user's ids
USERNS = UserNamespace(uid=START, gid=START + 65536)


def userns_box(layers: Layers, script: str, user: str | None = None, **container: object) -> SpawnSpec:
    # the daemon gives the upper dir to the mapped root (daemon/userns.py); here the test does
    os.chown(layers.upper, USERNS.uid, USERNS.gid)
    return in_box(layers, script, user=user, userns=USERNS, **container)


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.mark.asyncio
async def test_maps_and_files_owned_by_the_mapped_ids(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    script = (
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; stat -c '%u:%g' /hello /bin/busybox /;"
        " echo x > /new; mkdir /made; touch /tmp/t; echo more >> /hello; chown 1000:1000 /made"
    )
    status, out = await run(spawner, reaper, userns_box(layers, script))
    assert status.code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["0", str(START), "65536"]
    assert lines[1].split() == ["0", str(START + 65536), "65536"]
    # inside, root is 0 and the shared layers belong to it
    assert lines[2:7] == ["0", "0", "0:0", "0:0", "0:0"]
    mapped_root = (START, START + 65536)
    assert owner(layers.upper / "new") == mapped_root
    assert owner(layers.upper / "tmp" / "t") == mapped_root
    assert owner(layers.upper / "hello") == mapped_root  # a copy-up
    assert owner(layers.upper / "made") == (START + 1000, START + 65536 + 1000)
    # the lower layers are untouched on disk: no chown, no copy
    assert owner(layers.top / "hello") == (0, 0)
    assert (layers.top / "hello").read_text() == "from the top layer\n"
    assert owner(layers.base / "bin" / "busybox") == (0, 0)
    assert not mounted(layers.target)
    assert not mounted(layers.base) and not mounted(layers.top)


@pytest.mark.asyncio
async def test_dev_belongs_to_container_root(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    script = "stat -c '%u:%g' /dev /dev/shm /dev/mqueue; touch /dev/made && echo made; grep -o 'gid=[0-9]*' /proc/self/mountinfo | sort -u"
    status, out = await run(spawner, reaper, userns_box(layers, script))
    assert status.code == 0, out
    lines = out.splitlines()
    assert lines[:4] == ["0:0", "0:0", "0:0", "made"]
    assert lines[4:] == [f"gid={USERNS.gid + 5}"]  # devpts: new ptys get the mapped tty group (mountinfo shows host ids)


@pytest.mark.asyncio
async def test_a_user_from_the_containers_passwd_maps_too(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, userns_box(layers, "id -u; touch /tmp/app", user="app"))
    assert status.code == 0, out
    assert out.split() == ["1000"]
    assert owner(layers.upper / "tmp" / "app") == (START + 1000, START + 65536 + 1000)


@pytest.mark.asyncio
async def test_container_root_cannot_write_host_owned_files(
    spawner: Spawner, reaper: Reaper, layers: Layers, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir(mode=0o755)
    (host / "owned").write_text("host data\n")
    (host / "owned").chmod(0o644)
    script = (
        "(echo evil >> /host/owned) 2>/dev/null && echo wrote || echo refused;"
        " (touch /host/new) 2>/dev/null && echo created || echo refused;"
        " (chmod 666 /host/owned) 2>/dev/null && echo chmodded || echo refused"
    )
    # with docker's capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER): in the host's
    # user namespace they would win; over ids it does not map they mean nothing
    status, out = await run(spawner, reaper, userns_box(layers, script, binds=(Bind(str(host), "/host"),)))
    assert status.code == 0, out
    assert out.split() == ["refused", "refused", "refused"]
    assert (host / "owned").read_text() == "host data\n"
    assert not (host / "new").exists()
    assert (host / "owned").stat().st_mode & 0o777 == 0o644


PROBE = r"""
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
fds = {ns: os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in ("ipc", "uts", "net", "mnt", "user")}
status = open("/proc/self/status")  # the container's /proc has no us: read it later through this
for ns in ("ipc", "uts", "net", "mnt", "user"):  # user last, as supctl exec does
    if libc.setns(fds[ns], 0) != 0:
        raise SystemExit(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
os.setgroups([]); os.setgid(0); os.setuid(0)
result = {}
result["capeff"] = next(l.split()[1] for l in status if l.startswith("CapEff:"))
def attempt(name, call):
    ctypes.set_errno(0)
    try:
        rc = call()
        result[name] = "ok" if rc in (None, 0) else errno.errorcode[ctypes.get_errno()]
    except OSError as e:
        result[name] = errno.errorcode[e.errno]
attempt("mount_tmpfs", lambda: libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None))
attempt("mount_cgroup2", lambda: libc.mount(b"none", b"/sys/fs/cgroup", b"cgroup2", 0, None))
attempt("sethostname", lambda: socket.sethostname("pwned"))
attempt("sysctl", lambda: open("/proc/sys/kernel/domainname", "w").write("pwned"))
attempt("mknod", lambda: os.mknod("/tmp/mem", 0o20600, os.makedev(1, 1)))
attempt("host_file", lambda: open("/host/owned", "a").write("evil"))
attempt("signal_host_process", lambda: os.kill(os.getppid(), 0))
print(json.dumps(result))
"""


@pytest.mark.asyncio
async def test_every_capability_in_the_userns_has_no_power_over_the_host(
    spawner: Spawner, reaper: Reaper, layers: Layers, tmp_path: Path
) -> None:
    """A process with ALL capabilities in the container's user namespace (what
    cap_add = ["SYS_ADMIN"] or an escape to container root would give) joins
    the container and tries the host: every namespace but its user namespace
    belongs to the host's, so each attempt is refused."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "owned").write_text("host data\n")
    (host / "owned").chmod(0o644)
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    hostname = socket_hostname()
    async with running(spawner, reaper, userns_box(layers, "touch /tmp/up; exec sleep 1000", binds=(Bind(str(host), "/host"),))) as main:
        await wait_for_file(layers.upper / "tmp" / "up")
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run([sys.executable, "-I", "-S", str(probe), str(main.pid)], capture_output=True, text=True, timeout=DEADLINE)
        )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert int(result.pop("capeff"), 16) == (1 << (last_cap() + 1)) - 1  # every capability, in the userns
    assert result == {
        "mount_tmpfs": "EPERM",
        "mount_cgroup2": "EPERM",
        "sethostname": "EPERM",
        "sysctl": result["sysctl"],
        "mknod": "EPERM",
        "host_file": "EACCES",
        "signal_host_process": "EPERM",
    }
    assert result["sysctl"] in ("EROFS", "EACCES")  # /proc/sys is read-only, and not its to remount
    assert socket_hostname() == hostname
    assert (host / "owned").read_text() == "host data\n"
    assert not (layers.upper / "tmp" / "mem").exists()


@pytest.mark.asyncio
async def test_exec_into_a_userns_container_runs_in_its_namespace(
    spawner: Spawner, reaper: Reaper, layers: Layers
) -> None:
    async with running(spawner, reaper, userns_box(layers, "touch /tmp/up; exec sleep 1000")) as main:
        await wait_for_file(layers.upper / "tmp" / "up")
        spec = SpawnSpec(argv=("/bin/sh", "-c", "cat /proc/self/uid_map; id -u; touch /tmp/from-exec"), join=JoinSpec(pid=main.pid))
        status, out = await run(spawner, reaper, spec)
        assert status.code == 0, out
        assert out.splitlines()[0].split() == ["0", str(START), "65536"]
        assert out.splitlines()[1] == "0"
        assert owner(layers.upper / "tmp" / "from-exec") == (START, START + 65536)


@pytest.mark.asyncio
async def test_network_none_opens_low_ports_to_container_root(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    # its netns belongs to the host's user namespace: CAP_NET_BIND_SERVICE alone would not do
    script = "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; nc -l -p 80 & sleep 0.2; netstat -ltn | grep -c ':80 '; kill %1"
    status, out = await run(spawner, reaper, userns_box(layers, script, network="none"))
    assert out.split()[:2] == ["0", "1"], out


@pytest.mark.asyncio
async def test_short_layer_names_and_a_readonly_root(spawner: Spawner, reaper: Reaper, layers: Layers, tmp_path: Path) -> None:
    # plans with many layers name them by symlinks in a chdir folder: the id-mapped
    # mounts go on the real layer folders those links lead to
    links = tmp_path / "l"
    links.mkdir()
    os.symlink(layers.base, links / "a")
    os.symlink(layers.top, links / "b")
    rootfs = RootfsMount(lowerdirs=("a", "b"), target=str(layers.target), upperdir=str(layers.upper),
                         workdir=str(layers.work), readonly=True, chdir=str(links))
    script = "stat -c %u /hello /bin/busybox; (touch /x) 2>/dev/null && echo writable || echo readonly; cat /proc/self/uid_map"
    status, out = await run(spawner, reaper, userns_box(layers, script, rootfs=rootfs))
    assert status.code == 0, out
    assert out.split()[:3] == ["0", "0", "readonly"]
    assert out.split()[3:] == ["0", str(START), "65536"]
    assert not mounted(layers.base) and not mounted(layers.top)


@pytest.mark.asyncio
@pytest.mark.skipif(not os.path.exists(TINI), reason="tini-static not installed")
async def test_init_runs_in_the_user_namespace_too(spawner: Spawner, reaper: Reaper, layers: Layers) -> None:
    status, out = await run(spawner, reaper, userns_box(layers, "echo $$; cat /proc/1/uid_map; exit 3", init=TINI))
    assert status.code == 3, out
    assert out.split() == ["2", "0", str(START), "65536"]


@pytest.mark.asyncio
async def test_a_layer_that_cannot_be_id_mapped_is_a_clear_error(
    spawner: Spawner, layers: Layers, tmp_path: Path
) -> None:
    spec = userns_box(layers, "true")
    assert spec.container is not None
    rootfs = spec.container.rootfs
    bad = ContainerSpec(rootfs=type(rootfs)(("/proc/sys",), rootfs.target, rootfs.upperdir, rootfs.workdir), userns=USERNS)
    with pytest.raises(SpawnError, match=r"userns mount /proc/sys id-mapped: .*cannot do id-mapped mounts"):
        pending = await spawner.spawn(SpawnSpec(argv=("/bin/true",), container=bad), stdio=Output().stdio())
        await pending.wait_ready()


def socket_hostname() -> str:
    import socket

    return socket.gethostname()


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())
