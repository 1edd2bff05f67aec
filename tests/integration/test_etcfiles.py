"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname: written by
EtcFiles (daemon/etcfiles.py) from host sources the test controls, bound by
the real shim over whatever the image has at those paths, seen by a real
process in the container. Peers' names come and go while containers run."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.daemon.etcfiles import EtcFiles, HostSources
from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner, SpawnError
from supervisor.runtime.spec import JoinSpec, SpawnSpec, UserNamespace
from supervisor.units.model import Unit
from supervisor.units.parse import parse_unit
from tests.conftest import requires_root
from tests.integration.test_runtime_container import (  # noqa: F401 - fixtures
    Layers,
    busybox_layer,
    in_box,
    layers,
    mounted,
    run,
    running,
)

pytestmark = [requires_root, pytest.mark.root]

STUB = "# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
UPSTREAM = "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch corp.example\n"
START = 3_100_000  # a userns id block far from real users (and from test_runtime_userns's)


@pytest.fixture
def etc(tmp_path: Path) -> Iterator[EtcFiles]:
    sources = tmp_path / "host-etc"
    sources.mkdir()
    (sources / "resolv.conf").write_text(STUB)
    (sources / "upstream.conf").write_text(UPSTREAM)
    (sources / "hosts").write_text("127.0.0.1 localhost\n192.0.2.10 the-host\n")
    files = EtcFiles(tmp_path / "run", HostSources(sources / "resolv.conf", sources / "upstream.conf", sources / "hosts"))
    yield files
    leftovers = list((tmp_path / "run").rglob("*")) if (tmp_path / "run").exists() else []
    assert not [p for p in leftovers if p.is_file()], f"files left behind: {leftovers}"


def make_unit(name: str, rootfs: str = "") -> Unit:
    text = f'[exec]\ncommand = ["/bin/true"]\n[rootfs]\nlayers = ["/unused"]\n{rootfs}'
    return parse_unit(name, tomllib.loads(text), Path(f"/units/{name}.toml"))


def spec_for(layers: Layers, etc: EtcFiles, unit: Unit, script: str, **container: object) -> SpawnSpec:
    files = etc.prepare(unit, container.pop("owner", None))  # type: ignore[arg-type]
    container.setdefault("hostname", "web")
    return in_box(layers, script, etc_files=tuple(sorted(files.items())), **container)


@pytest.mark.asyncio
async def test_files_override_the_image_and_say_what_they_should(
    spawner: Spawner, reaper: Reaper, layers: Layers, etc: EtcFiles
) -> None:
    (layers.top / "etc").mkdir()
    (layers.top / "etc" / "hosts").write_text("6.6.6.6 localhost\n")
    (layers.top / "etc" / "resolv.conf").write_text("nameserver 6.6.6.6\n")
    unit = make_unit("web", 'hostname = "web"\nnetwork = "none"\nhosts = { "db.local" = "10.1.2.3" }\n')
    script = "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf; echo --; hostname"
    status, out = await run(spawner, reaper, spec_for(layers, etc, unit, script, network="none"))
    assert status.code == 0, out  # type: ignore[attr-defined]
    hostname, hosts, resolv, uts = out.split("--\n")
    assert hostname == "web\n" and uts == "web\n"
    assert "6.6.6.6" not in hosts and "6.6.6.6" not in resolv
    host_lines = [line.split() for line in hosts.splitlines() if not line.startswith("#")]
    assert ["127.0.0.1", "localhost"] in host_lines
    assert ["::1", "localhost", "ip6-localhost", "ip6-loopback"] in host_lines
    assert ["10.1.2.3", "db.local"] in host_lines
    assert ["127.0.0.1", "web"] in host_lines
    # the stub on the host's loopback means nothing in the container's own netns
    servers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
    assert servers == ["192.0.2.1", "192.0.2.2"]
    assert "search corp.example" in resolv
    # the image's files are untouched
    assert (layers.top / "etc" / "hosts").read_text() == "6.6.6.6 localhost\n"
    assert not mounted(layers.target)
    etc.forget("web")
    assert not etc.directory("web").exists()


@pytest.mark.asyncio
async def test_missing_etc_is_created_and_host_network_keeps_the_stub(
    spawner: Spawner, reaper: Reaper, layers: Layers, etc: EtcFiles
) -> None:
    os.mknod(layers.top / "etc", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # an overlay whiteout: no /etc at all
    unit = make_unit("hostnet", 'hosts = { "db.local" = "fd00::3" }\n')
    status, out = await run(spawner, reaper, spec_for(layers, etc, unit, "ls /etc; cat /etc/resolv.conf /etc/hosts"))
    assert status.code == 0, out  # type: ignore[attr-defined]
    assert out.splitlines()[:3] == ["hostname", "hosts", "resolv.conf"]
    assert "nameserver 127.0.0.53" in out  # same network namespace: the stub answers
    assert "192.0.2.10 the-host" in out and "fd00::3\tdb.local" in out
    assert (layers.upper / "etc" / "hosts").is_file()
    etc.forget("hostnet")


@pytest.mark.asyncio
async def test_dangling_resolv_conf_link_lands_inside_the_root(
    spawner: Spawner, reaper: Reaper, layers: Layers, etc: EtcFiles, tmp_path: Path
) -> None:
    """systemd images: /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf;
    others point at absolute host-looking paths. Both resolve in the root."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (layers.top / "etc").mkdir()
    os.symlink("../run/systemd/resolve/stub-resolv.conf", layers.top / "etc" / "resolv.conf")
    os.symlink(f"../../../../..{canary}/hosts", layers.top / "etc" / "hosts")
    unit = make_unit("linked", 'network = "none"\ndns = ["1.1.1.1"]\n')
    script = "readlink /etc/resolv.conf; cat /etc/resolv.conf; cat /run/systemd/resolve/stub-resolv.conf; cat /etc/hosts"
    status, out = await run(spawner, reaper, spec_for(layers, etc, unit, script, network="none"))
    assert status.code == 0, out  # type: ignore[attr-defined]
    assert out.splitlines()[0] == "../run/systemd/resolve/stub-resolv.conf"
    assert out.count("nameserver 1.1.1.1") == 2 and "127.0.0.53" not in out
    assert "127.0.0.1\tlinked" in out
    # the mount points were made in the container's upper layer, nothing on the host
    assert (layers.upper / "run" / "systemd" / "resolve" / "stub-resolv.conf").is_file()
    assert (layers.upper / str(canary).lstrip("/") / "hosts").is_file()
    assert os.listdir(canary) == []
    assert not mounted(layers.target)
    etc.forget("linked")


@pytest.mark.asyncio
async def test_readonly_root_gets_read_only_files(
    spawner: Spawner, reaper: Reaper, layers: Layers, etc: EtcFiles
) -> None:
    unit = make_unit("ro", 'writable = "readonly"\n')
    script = "cat /etc/hostname; (echo x >> /etc/hosts) 2>/dev/null && echo wrote || echo refused; (touch /new) 2>/dev/null || echo ro-root"
    spec = spec_for(layers, etc, unit, script, rootfs=layers.mount(readonly=True))
    status, out = await run(spawner, reaper, spec)
    assert status.code == 0, out  # type: ignore[attr-defined]
    assert out.splitlines() == ["ro", "refused", "ro-root"]
    etc.forget("ro")


@pytest.mark.asyncio
async def test_userns_root_reads_and_writes_its_hosts(
    spawner: Spawner, reaper: Reaper, layers: Layers, etc: EtcFiles
) -> None:
    userns = UserNamespace(uid=START, gid=START + 65536)
    os.chown(layers.upper, userns.uid, userns.gid)
    unit = make_unit("mapped", 'userns = "auto"\nnetwork = "none"\n')
    script = "id -u; stat -c '%u:%g' /etc/hosts; cat /etc/resolv.conf >/dev/null && echo read; echo '10.9.9.9 added' >> /etc/hosts && echo wrote"
    spec = spec_for(layers, etc, unit, script, network="none", userns=userns, owner=(userns.uid, userns.gid))
    status, out = await run(spawner, reaper, spec)
    assert status.code == 0, out  # type: ignore[attr-defined]
    assert out.splitlines() == ["0", "0:0", "read", "wrote"]
    assert "10.9.9.9 added" in (etc.directory("mapped") / "hosts").read_text()
    etc.forget("mapped")


async def cat_hosts(spawner: Spawner, reaper: Reaper, pid: int) -> list[list[str]]:
    """/etc/hosts as a process exec'd into the container reads it."""
    status, out = await run(spawner, reaper, SpawnSpec(argv=("/bin/cat", "/etc/hosts"), join=JoinSpec(pid=pid)))
    assert status.code == 0, out  # type: ignore[attr-defined]
    return [line.split() for line in out.splitlines() if line and not line.startswith("#")]


@pytest.mark.asyncio
async def test_peers_on_one_network_see_each_others_names_while_running(
    spawner: Spawner, reaper: Reaper, layers: Layers, etc: EtcFiles, tmp_path: Path
) -> None:
    # a second container needs a root of its own
    other = Layers(layers.base, layers.top, tmp_path / "upper2", tmp_path / "work2", tmp_path / "rootfs2")
    for d in (other.upper, other.work, other.target):
        d.mkdir()
    alpha, beta, gamma = make_unit("alpha"), make_unit("beta"), make_unit("gamma")
    async with running(spawner, reaper, spec_for(layers, etc, alpha, "exec sleep 1000", hostname="alpha")) as a, \
            running(spawner, reaper, spec_for(other, etc, beta, "exec sleep 1000", hostname="beta")) as b:
        inode = os.stat(etc.directory("alpha") / "hosts").st_ino
        etc.prepare(gamma)  # on another network: never in their files
        etc.set_address("gamma", "othernet", "10.77.0.9")
        etc.set_address("alpha", "testnet", "10.99.0.2")
        etc.set_address("beta", "testnet", "10.99.0.3")
        seen_by_alpha = await cat_hosts(spawner, reaper, a.pid)
        seen_by_beta = await cat_hosts(spawner, reaper, b.pid)
        assert ["10.99.0.2", "alpha"] in seen_by_alpha and ["10.99.0.3", "beta"] in seen_by_alpha
        assert ["10.99.0.3", "beta"] in seen_by_beta and ["10.99.0.2", "alpha"] in seen_by_beta
        assert not any("gamma" in line for line in seen_by_alpha + seen_by_beta)
        assert ["127.0.0.1", "alpha"] not in seen_by_alpha  # its address replaced the loopback line
        etc.forget("beta")
        seen_by_alpha = await cat_hosts(spawner, reaper, a.pid)
        assert not any("beta" in line for line in seen_by_alpha)
        assert ["10.99.0.2", "alpha"] in seen_by_alpha
        assert os.stat(etc.directory("alpha") / "hosts").st_ino == inode  # rewritten in place
        assert not etc.directory("beta").exists()
    etc.forget("alpha")
    etc.forget("gamma")
    assert not mounted(layers.target) and not mounted(other.target)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda etc_dir: (etc_dir / "hosts").mkdir(), "etc /etc/hosts: /etc/hosts is not a regular file in the image"),
        (lambda etc_dir: os.symlink("/etc/hosts", etc_dir / "hosts"), "etc /etc/hosts: /etc/hosts: Too many levels of symbolic links"),
    ],
)
async def test_unusable_image_path_fails_the_start_naming_it(
    spawner: Spawner, layers: Layers, etc: EtcFiles, make: object, message: str
) -> None:
    (layers.top / "etc").mkdir()
    make(layers.top / "etc")  # type: ignore[operator]
    unit = make_unit("broken")
    with pytest.raises(SpawnError) as caught:
        await spawner.spawn(spec_for(layers, etc, unit, "true"), stdio=(0, 1, 2))
    assert str(caught.value) == message
    assert not mounted(layers.target)
    etc.forget("broken")


def test_moving_to_another_network_and_unknown_units(etc: EtcFiles) -> None:
    """The peer table alone: a unit that changes network leaves the old
    one's files; an address for a unit supd never prepared changes nothing."""
    for name in ("a", "b", "c"):
        etc.prepare(make_unit(name))
    etc.set_address("a", "n1", "10.1.0.2")
    etc.set_address("b", "n1", "10.1.0.3")
    etc.set_address("c", "n2", "10.2.0.4")

    def hosts(name: str) -> list[list[str]]:
        text = (etc.directory(name) / "hosts").read_text()
        return [line.split() for line in text.splitlines() if line and not line.startswith("#")]

    assert ["10.1.0.3", "b"] in hosts("a") and ["10.2.0.4", "c"] not in hosts("a")
    etc.set_address("b", "n2", "10.2.0.3")
    assert not any("b" in line for line in hosts("a"))
    assert ["10.2.0.3", "b"] in hosts("c") and ["10.2.0.4", "c"] in hosts("b")
    before = {name: hosts(name) for name in ("a", "b", "c")}
    etc.set_address("ghost", "n2", "10.2.0.9")
    assert {name: hosts(name) for name in ("a", "b", "c")} == before
    assert not etc.directory("ghost").exists()
    for name in ("a", "b", "c"):
        etc.forget(name)
