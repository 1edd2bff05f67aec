"""Hostile images against the container setup: every path inside the rootfs
is resolved inside it (issue 11, runc's CVE-2021-30465 class). Each trick
either keeps its in-container meaning or fails the start with a clear error,
and nothing is created, mounted or written on the host (root)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from supervisor.runtime.reaper import Reaper
from supervisor.runtime.spawn import Spawner, SpawnError
from supervisor.runtime.spec import Bind, ContainerSpec, RootfsMount, SpawnSpec
from tests.conftest import requires_root
from tests.helpers.busybox import make_busybox_rootfs

pytestmark = [requires_root, pytest.mark.root]

DEADLINE = 30.0


@dataclass(frozen=True)
class Box:
    base: Path  # busybox
    top: Path  # the hostile layer: symlinks made by each test
    upper: Path
    work: Path
    target: Path
    canary: Path  # a host directory the image points at
    host_file: Path  # a host file to bind

    def spec(self, script: str, binds: tuple[Bind, ...] = (), user: str | None = None,
             cwd: str = "/", init: str | None = None) -> SpawnSpec:
        rootfs = RootfsMount(lowerdirs=(str(self.base), str(self.top)), upperdir=str(self.upper),
                             workdir=str(self.work), target=str(self.target))
        return SpawnSpec(argv=("/bin/sh", "-c", script), user=user, cwd=cwd,
                         container=ContainerSpec(rootfs=rootfs, binds=binds, init=init))

    def link(self, path: str, target: str) -> None:
        """A symlink at `path` inside the hostile layer."""
        where = self.top / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, where)


def listing(path: Path) -> set[str]:
    return set(os.listdir(path))


def mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [" ".join(line.split()[3:5]) for line in f]


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "layer")


@pytest.fixture
def box(tmp_path: Path, busybox_layer: Path) -> Iterator[Box]:
    for name in ("top", "upper", "work", "rootfs", "canary"):
        (tmp_path / name).mkdir()
    (tmp_path / "canary" / "keep").write_text("host data\n")
    host_file = tmp_path / "host.conf"
    host_file.write_text("from the host\n")
    box = Box(busybox_layer, tmp_path / "top", tmp_path / "upper", tmp_path / "work",
              tmp_path / "rootfs", tmp_path / "canary", host_file)
    # whatever the image did, the host is as it was: its /, the canary, /etc, its mounts
    before = (listing(Path("/")), listing(box.canary), listing(Path("/etc")), mountinfo())
    yield box
    after = (listing(Path("/")), listing(box.canary), listing(Path("/etc")), mountinfo())
    assert after[0] == before[0], "entries appeared in the host's /"
    assert after[1] == before[1], "entries appeared in the host canary dir"
    # /etc by name: other work on this host may add users meanwhile (group.lock...)
    assert not {"supd-paths-test.conf", "app.conf", "sub"} & (after[2] - before[2]), "entries appeared in the host's /etc"
    assert after[3] == before[3], "mounts leaked into the host"
    assert (box.canary / "keep").read_text() == "host data\n"


async def run(spawner: Spawner, reaper: Reaper, spec: SpawnSpec) -> tuple[int, str]:
    read_end, write_end = os.pipe()
    try:
        pending = await spawner.spawn(spec, stdio=(0, write_end, write_end))
        await pending.go()
        with anyio.fail_after(DEADLINE):
            status = await reaper.wait(pending.pid)
    finally:
        os.close(write_end)
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
        os.close(read_end)
    return status.code, data.decode()  # type: ignore[attr-defined]


async def refused(spawner: Spawner, spec: SpawnSpec) -> str:
    with pytest.raises(SpawnError) as caught:
        await spawner.spawn(spec, stdio=(0, 1, 2))
    return str(caught.value)


# --- kernel filesystems on a linked /dev, /proc, /sys ------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "fstype"), [("dev", "tmpfs"), ("proc", "proc"), ("sys", "sysfs")])
async def test_system_dir_linked_to_host_root_is_refused(spawner: Spawner, box: Box, name: str, fstype: str) -> None:
    box.link(name, "/")
    message = await refused(spawner, box.spec("true"))
    assert f"mount {fstype} on /{name}: /{name} is a symbolic link to /; the image must have a directory there" in message


@pytest.mark.asyncio
async def test_dev_linked_into_the_image_is_refused_too(spawner: Spawner, box: Box) -> None:
    (box.top / "lib" / "dev").mkdir(parents=True)
    box.link("dev", "/lib/dev")
    message = await refused(spawner, box.spec("true"))
    assert "/dev is a symbolic link to /lib/dev" in message
    assert listing(box.top / "lib" / "dev") == set()


# --- bind targets -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bind_under_a_link_to_a_host_dir_stays_inside(spawner: Spawner, box: Box) -> None:
    """`mnt -> <host dir>` names that path inside the root, where it does not exist."""
    box.link("mnt", str(box.canary))
    bind = Bind(str(box.host_file), "/mnt/sub/app.conf", readonly=False)
    message = await refused(spawner, box.spec("true", binds=(bind,)))
    assert message.startswith(f"bind {box.host_file} on /mnt/sub/app.conf: /mnt is a dangling symbolic link to {box.canary}")


@pytest.mark.asyncio
async def test_bind_under_a_link_works_with_its_meaning_inside(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    """The same link, when the image has its target, leads there: in the root."""
    (box.top / str(box.canary).lstrip("/")).mkdir(parents=True)
    box.link("mnt", str(box.canary))
    bind = Bind(str(box.host_file), "/mnt/sub/app.conf", readonly=True)
    code, out = await run(spawner, reaper, box.spec(f"cat {box.canary}/sub/app.conf", binds=(bind,)))
    assert (code, out) == (0, "from the host\n")
    # the mount point was made in the container's upper layer
    assert (box.upper / str(box.canary).lstrip("/") / "sub" / "app.conf").exists()


@pytest.mark.asyncio
async def test_relative_link_climbing_out_stops_at_the_root(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    (box.top / "data").mkdir()
    box.link("srv/www", "../../../../../../../../data")
    bind = Bind(str(box.canary), "/srv/www/site", readonly=False)
    code, out = await run(spawner, reaper, box.spec("cat /data/site/keep", binds=(bind,)))
    assert (code, out) == (0, "host data\n")
    assert (box.upper / "data" / "site").is_dir()


@pytest.mark.asyncio
async def test_dotdot_in_a_bind_target_stays_inside(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    target = f"/../../..{box.canary}/new/app.conf"
    bind = Bind(str(box.host_file), target, readonly=False)
    code, out = await run(spawner, reaper, box.spec(f"cat {box.canary}/new/app.conf", binds=(bind,)))
    assert (code, out) == (0, "from the host\n")
    assert (box.upper / str(box.canary).lstrip("/") / "new" / "app.conf").exists()


@pytest.mark.asyncio
async def test_bind_onto_an_image_symlink_targets_its_meaning_inside(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    """nginx's sites-enabled/default -> /etc/nginx/sites-available/default."""
    available = box.top / "etc" / "nginx" / "sites-available"
    available.mkdir(parents=True)
    (available / "default").write_text("image default\n")
    box.link("etc/nginx/sites-enabled/default", "/etc/nginx/sites-available/default")
    for readonly in (False, True):
        bind = Bind(str(box.host_file), "/etc/nginx/sites-enabled/default", readonly=readonly)
        script = "cat /etc/nginx/sites-enabled/default /etc/nginx/sites-available/default; readlink /etc/nginx/sites-enabled/default"
        code, out = await run(spawner, reaper, box.spec(script, binds=(bind,)))
        assert (code, out.splitlines()) == (0, ["from the host", "from the host", "/etc/nginx/sites-available/default"])
    assert (available / "default").read_text() == "image default\n"


@pytest.mark.asyncio
async def test_dangling_link_as_bind_target_is_refused(spawner: Spawner, box: Box) -> None:
    box.link("conf/app.conf", "/nowhere/app.conf")
    bind = Bind(str(box.host_file), "/conf/app.conf", readonly=False)
    message = await refused(spawner, box.spec("true", binds=(bind,)))
    assert message == f"bind {box.host_file} on /conf/app.conf: /conf/app.conf is a dangling symbolic link to /nowhere/app.conf"
    assert not (box.upper / "nowhere").exists()


@pytest.mark.asyncio
async def test_link_loop_is_refused_naming_the_path(spawner: Spawner, box: Box) -> None:
    box.link("loop", "/loop")
    bind = Bind(str(box.host_file), "/loop/app.conf", readonly=False)
    message = await refused(spawner, box.spec("true", binds=(bind,)))
    assert message == f"bind {box.host_file} on /loop/app.conf: /loop/app.conf: Too many levels of symbolic links"


@pytest.mark.asyncio
@pytest.mark.parametrize("magic", ["/proc/self/root", "/proc/1/cwd", "/proc/self/fd/0"])
async def test_link_through_the_containers_proc_magic_links_is_refused(spawner: Spawner, box: Box, magic: str) -> None:
    """Before pivot_root the container's own /proc/self/root is the host's /:
    a link through a /proc magic link would lead out, so none is followed."""
    box.link("escape", f"{magic}{box.canary}")
    bind = Bind(str(box.host_file), "/escape/app.conf", readonly=False)
    message = await refused(spawner, box.spec("true", binds=(bind,)))
    assert message == f"bind {box.host_file} on /escape/app.conf: /escape/app.conf: Too many levels of symbolic links"


@pytest.mark.asyncio
async def test_bind_onto_the_root_itself_is_refused(spawner: Spawner, box: Box) -> None:
    box.link("mnt", "/")
    bind = Bind(str(box.canary), "/mnt", readonly=False)
    message = await refused(spawner, box.spec("true", binds=(bind,)))
    assert message == f"bind {box.canary} on /mnt: /mnt is the container's root"


@pytest.mark.asyncio
async def test_file_bind_onto_an_image_directory_names_the_target(spawner: Spawner, box: Box) -> None:
    (box.top / "www").mkdir()
    bind = Bind(str(box.host_file), "/www", readonly=False)
    message = await refused(spawner, box.spec("true", binds=(bind,)))
    assert message == f"bind {box.host_file} on /www: Not a directory"


# --- /etc, users, working directory ------------------------------------------------------


@pytest.mark.asyncio
async def test_etc_linked_to_etc_reads_and_writes_nothing_of_the_hosts(spawner: Spawner, box: Box) -> None:
    box.link("etc", "/etc")  # inside: a loop
    message = await refused(spawner, box.spec("true", user="nobody"))
    assert message == "read /etc/passwd: Too many levels of symbolic links"
    bind = Bind(str(box.host_file), "/etc/supd-paths-test.conf", readonly=False)
    message = await refused(spawner, box.spec("true", binds=(bind,)))
    assert message.endswith("/etc/supd-paths-test.conf: Too many levels of symbolic links")


@pytest.mark.asyncio
async def test_etc_linked_elsewhere_in_the_image_is_read_there(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    (box.top / "alt").mkdir()
    (box.top / "alt" / "passwd").write_text("web:x:4242:4343:web:/srv:/bin/sh\n")
    (box.top / "alt" / "group").write_text("web:x:4343:\n")
    box.link("etc", "/alt")
    code, out = await run(spawner, reaper, box.spec('echo "$(id -u) $(id -g) $HOME"', user="web"))
    assert (code, out.split()) == (0, ["4242", "4343", "/srv"])


@pytest.mark.asyncio
async def test_working_directory_missing_names_cwd(spawner: Spawner, box: Box) -> None:
    box.link("work", str(box.canary))  # a host dir: not there inside
    message = await refused(spawner, box.spec("true", cwd="/work"))
    assert message == "cwd /work: No such file or directory"


@pytest.mark.asyncio
async def test_readonly_root_gets_its_mount_point_through_a_link(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    (box.top / "data").mkdir()
    box.link("mnt", "/data")
    spec = box.spec("cat /data/sub/app.conf; touch /x 2>/dev/null || echo read-only",
                    binds=(Bind(str(box.host_file), "/mnt/sub/app.conf", readonly=False),))
    assert spec.container is not None
    spec = SpawnSpec(argv=spec.argv, container=ContainerSpec(
        rootfs=RootfsMount(spec.container.rootfs.lowerdirs, spec.container.rootfs.upperdir,
                           spec.container.rootfs.workdir, spec.container.rootfs.target, readonly=True),
        binds=spec.container.binds))
    code, out = await run(spawner, reaper, spec)
    assert (code, out.splitlines()) == (0, ["from the host", "read-only"])


@pytest.mark.asyncio
async def test_init_bind_and_masks_still_work(spawner: Spawner, reaper: Reaper, box: Box) -> None:
    tini = "/usr/bin/tini-static"
    if not os.path.exists(tini):
        pytest.skip("tini-static missing")
    masked = next(p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p))
    code, out = await run(spawner, reaper, box.spec(f"wc -c < {masked}; ls /dev/init; ls -l /dev/null", init=tini))
    lines = out.splitlines()
    assert code == 0, out
    assert lines[0] == "0" and lines[1] == "/dev/init" and lines[2].startswith("crw-rw-rw-")
