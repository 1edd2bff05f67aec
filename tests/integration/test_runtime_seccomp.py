"""The spawner installs the daemon-compiled seccomp filter, for real: a
static C probe in a busybox container makes the calls docker's default
profile refuses (root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner
from supervisor.runtime.spec import JoinSpec, RootfsMount, SpawnSpec
from supervisor.seccomp.compile import compile_filter
from supervisor.seccomp.profile import DEFAULT, parse_json
from supervisor.units.capabilities import CAPABILITIES, CONTAINER_DEFAULT
from tests.conftest import requires_root
from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.probes import build_probe, parse
from tests.integration.test_runtime_container import in_box, run, running, wait_for_file

pytestmark = [requires_root, pytest.mark.root]

EPERM, ENOSYS = str(1), str(38)
PODMAN = tuple(sorted(CONTAINER_DEFAULT))
REFUSED = ("io_uring_setup", "add_key", "keyctl", "personality_addr_no_randomize", "unshare_user",
           "clone_newuser", "clone3", "unshare_ns")  # fmt: skip
ALLOWED = ("getpid", "personality_query", "personality_linux", "clone_plain")


class Box:
    def __init__(self, base: Path, tmp: Path) -> None:
        self.base = base
        self.upper, self.work, self.target = tmp / "upper", tmp / "work", tmp / "rootfs"
        for d in (self.upper, self.work, self.target):
            d.mkdir()

    def mount(self) -> RootfsMount:
        return RootfsMount(lowerdirs=(str(self.base),), upperdir=str(self.upper), workdir=str(self.work),
                           target=str(self.target))  # fmt: skip


@pytest.fixture(scope="module")
def probe_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_busybox_rootfs(tmp_path_factory.mktemp("seccomp") / "layer")
    build_probe(root / "usr" / "bin")
    return root


@pytest.fixture
def box(probe_layer: Path, tmp_path: Path) -> Box:
    return Box(probe_layer, tmp_path)


@pytest.fixture(scope="module")
def default_filter() -> bytes:
    return compile_filter(DEFAULT, CONTAINER_DEFAULT)


def probe_spec(box: Box, *names: str, **kwargs: object) -> SpawnSpec:
    return in_box(box, "syscall-probe status " + " ".join(names), rootfs=box.mount(), **kwargs)  # type: ignore[arg-type]


async def probe(spawner: Spawner, reaper: Reaper, spec: SpawnSpec) -> dict[str, str]:
    status, out = await run(spawner, reaper, spec)
    assert getattr(status, "code", None) == 0, out
    return parse(out)


@pytest.mark.asyncio
async def test_default_filter_refuses_what_docker_refuses(
    spawner: Spawner, reaper: Reaper, box: Box, default_filter: bytes
) -> None:
    got = await probe(spawner, reaper, probe_spec(box, *REFUSED, *ALLOWED, "past_the_profile", seccomp=default_filter))
    assert got["Seccomp"] == "2"
    assert {n: got[n] for n in REFUSED} == {
        "io_uring_setup": EPERM, "add_key": EPERM, "keyctl": EPERM, "personality_addr_no_randomize": EPERM,
        "unshare_user": EPERM, "clone_newuser": EPERM, "clone3": ENOSYS, "unshare_ns": EPERM,
    }  # fmt: skip
    assert {n: got[n] for n in ALLOWED} == dict.fromkeys(ALLOWED, "ok")
    assert got["past_the_profile"] == ENOSYS


@pytest.mark.asyncio
async def test_without_a_filter_the_same_calls_work(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    """The control: what the filter refuses is refused by the filter, not by the
    capability set (add_key, keyctl, personality and a user namespace need none)."""
    got = await probe(spawner, reaper, probe_spec(box, "add_key", "keyctl", "personality_addr_no_randomize",
                                                  "unshare_user", "clone3"))  # fmt: skip
    assert got["Seccomp"] == "0"
    assert got["add_key"] == got["keyctl"] == got["personality_addr_no_randomize"] == got["unshare_user"] == "ok"
    assert got["clone3"] != ENOSYS  # the kernel's own answer to clone3(NULL, 0): EINVAL/EFAULT


@pytest.mark.asyncio
async def test_sys_admin_gets_namespaces_back(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    caps = tuple(sorted({*CONTAINER_DEFAULT, CAPABILITIES["SYS_ADMIN"]}))
    program = compile_filter(DEFAULT, caps)
    got = await probe(spawner, reaper, probe_spec(box, "unshare_ns", "clone3", "add_key", caps=caps, seccomp=program))
    assert got["Seccomp"] == "2"
    assert got["unshare_ns"] == "ok"
    assert got["clone3"] not in (ENOSYS, EPERM)  # reaches the kernel
    assert got["add_key"] == EPERM


@pytest.mark.asyncio
async def test_a_custom_profile_is_what_it_says(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    profile = parse_json(
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ['
        '{"names": ["add_key"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},'
        '{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 262144, "op": "SCMP_CMP_EQ"}]}'
        "]}"
    )
    got = await probe(spawner, reaper, probe_spec(box, "add_key", "keyctl", "personality_addr_no_randomize",
                                                  "personality_linux", seccomp=compile_filter(profile, PODMAN)))  # fmt: skip
    assert got["Seccomp"] == "2"
    assert (got["add_key"], got["keyctl"]) == ("13", "ok")
    assert (got["personality_addr_no_randomize"], got["personality_linux"]) == (EPERM, "ok")


@pytest.mark.asyncio
async def test_busybox_works_under_the_filter(spawner: Spawner, reaper: Reaper, box: Box, default_filter: bytes) -> None:
    script = "ps >/dev/null && echo hi | sed s/hi/ok/ && mkdir -p /tmp/a && touch /tmp/a/b && ls /tmp/a && wget -q -O- http://127.0.0.1:1 2>/dev/null; id -u"
    status, out = await run(spawner, reaper, in_box(box, script, rootfs=box.mount(), seccomp=default_filter))  # type: ignore[arg-type]
    assert getattr(status, "code", None) == 0, out
    assert out.split() == ["ok", "b", "0"]


@pytest.mark.asyncio
async def test_exec_into_gets_the_filter(spawner: Spawner, reaper: Reaper, box: Box, default_filter: bytes) -> None:
    async with running(spawner, reaper, in_box(box, "touch /tmp/up; exec sleep 1000", rootfs=box.mount())) as main:  # type: ignore[arg-type]
        await wait_for_file(box.upper / "tmp" / "up")
        spec = SpawnSpec(argv=("syscall-probe", "status", "add_key", "clone3"), join=JoinSpec(pid=main.pid),
                         caps=PODMAN, seccomp=default_filter)  # fmt: skip
        got = await probe(spawner, reaper, spec)
        assert (got["Seccomp"], got["add_key"], got["clone3"]) == ("2", EPERM, ENOSYS)


@pytest.mark.asyncio
async def test_a_plain_process_that_opts_in(
    spawner: Spawner, reaper: Reaper, probe_layer: Path, default_filter: bytes
) -> None:
    binary = str(probe_layer / "usr" / "bin" / "syscall-probe")
    program = compile_filter(DEFAULT, frozenset(CAPABILITIES.values()))
    spec = SpawnSpec(argv=(binary, "status", "add_key", "unshare_ns"), seccomp=program, no_new_privs=True)
    got = await probe(spawner, reaper, spec)
    # full root keeps namespaces (CAP_SYS_ADMIN) but not the keyring
    assert (got["Seccomp"], got["add_key"], got["unshare_ns"]) == ("2", EPERM, "ok")
    got = await probe(spawner, reaper, SpawnSpec(argv=(binary, "status")))
    assert got["Seccomp"] == "0"


@pytest.mark.asyncio
async def test_a_plain_process_with_cap_drop(spawner: Spawner, reaper: Reaper) -> None:
    caps = tuple(sorted(set(CAPABILITIES.values()) - {CAPABILITIES["NET_RAW"], CAPABILITIES["SYS_ADMIN"]}))
    spec = SpawnSpec(argv=("/bin/grep", "-e", "CapBnd", "-e", "CapEff", "/proc/self/status"), caps=caps)
    status, out = await run(spawner, reaper, spec)
    assert getattr(status, "code", None) == 0, out
    fields = dict(line.split(":\t") for line in out.splitlines())
    for key in ("CapBnd", "CapEff"):
        mask = int(fields[key], 16)
        assert not mask & (1 << 13) and not mask & (1 << 21) and mask & 1, (key, fields[key])


@pytest.mark.asyncio
async def test_network_none_lets_any_group_ping(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    """Without NET_RAW (podman's set): no packet socket, but ping's ICMP socket works."""
    spec = in_box(box, "cat /proc/sys/net/ipv4/ping_group_range; syscall-probe icmp_echo packet_socket",
                  rootfs=box.mount(), network="none",
                  sysctls=(("net.ipv4.ping_group_range", "0 2147483647"),))  # fmt: skip
    status, out = await run(spawner, reaper, spec)
    assert getattr(status, "code", None) == 0, out
    assert out.split() == ["0", "2147483647", "icmp_echo=ok", "packet_socket=1"]
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        host = f.read().split()
    assert host != ["0", "2147483647"] or os.environ.get("SUPD_HOST_PING_RANGE_OPEN")  # the host's is untouched
