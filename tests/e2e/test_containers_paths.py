"""Image symlinks through a real supd and the real supctl (issue 11): a bind
onto an image symlink works with the link's meaning inside the container;
links that point out of the root fail the unit with an error naming the key,
and the host's /, /etc, a canary dir and its mounts are as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd
from tests.e2e.test_containers import container_unit, sh, start_unit
from tests.e2e.test_containers_teardown import mounts_anywhere
from tests.helpers.busybox import make_busybox_rootfs


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def layer_with_links(where: Path, links: dict[str, str]) -> Path:
    where.mkdir(parents=True)
    for path, target in links.items():
        link = where / path
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    return where


def test_image_symlinks_keep_their_meaning_inside(supd: Supd, busybox_layer: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    host_conf = tmp_path / "site.conf"
    host_conf.write_text("server from the host\n")
    nginx = layer_with_links(tmp_path / "nginx", {"etc/nginx/sites-enabled/default": "/etc/nginx/sites-available/default"})
    (nginx / "etc" / "nginx" / "sites-available").mkdir()
    (nginx / "etc" / "nginx" / "sites-available" / "default").write_text("image default\n")
    before = (set(os.listdir("/")), set(os.listdir("/etc")), set(os.listdir(canary)))
    bind_conf = f'binds = [{{ source = "{host_conf}", target = "/etc/nginx/sites-enabled/default", readonly = true }}]\n'
    bind_mnt = f'binds = [{{ source = "{host_conf}", target = "/mnt/sub/site.conf" }}]\n'
    web = start_unit(supd, "web", container_unit([busybox_layer, nginx], extra_rootfs=bind_conf))
    web_ns = os.readlink(f"/proc/{web['pid']}/ns/mnt")
    assert sh(supd, "web", "cat /etc/nginx/sites-available/default") == "server from the host\n"
    assert sh(supd, "web", "readlink /etc/nginx/sites-enabled/default").strip() == "/etc/nginx/sites-available/default"
    # unit → (its file, what its error must say)
    cases = {
        "devroot": (container_unit([busybox_layer, layer_with_links(tmp_path / "d", {"dev": "/"})]),
                    ["[rootfs]", "/dev is a symbolic link to /"]),
        "procroot": (container_unit([busybox_layer, layer_with_links(tmp_path / "p", {"proc": "/"})]),
                     ["[rootfs]", "/proc is a symbolic link to /"]),
        "mnthost": (container_unit([busybox_layer, layer_with_links(tmp_path / "m", {"mnt": str(canary)})], extra_rootfs=bind_mnt),
                    ["[rootfs].binds", f"/mnt is a dangling symbolic link to {canary}"]),
        # met first by the /etc files supd binds (in path order), before /etc/passwd
        "etcloop": (container_unit([busybox_layer, layer_with_links(tmp_path / "e", {"etc": "/etc"})], exec_extra='user = "nobody"\n'),
                    ["[rootfs]: etc /etc/hostname: /etc/hostname: Too many levels of symbolic links"]),
        "nocwd": (container_unit([busybox_layer], exec_extra='working_directory = "/nowhere"\n'),
                  ["[exec].working_directory", "cwd /nowhere: No such file or directory"]),
    }
    for name, (text, _needles) in cases.items():
        supd.write_unit(name, text)
    for name, (_text, needles) in cases.items():
        st = supd.wait_state(name, "failed", "running", "exited", timeout=30)
        assert st["state"] == "failed", (name, st)
        for needle in needles:
            assert needle in st["error"], (name, needle, st["error"])
    after = (set(os.listdir("/")), set(os.listdir("/etc")), set(os.listdir(canary)))
    assert (after[0], after[2]) == (before[0], before[2])
    # /etc by name: other work on this host may add users meanwhile (group.lock...)
    assert not {"passwd", "group", "sub", "site.conf"} & (after[1] - before[1])
    left = [m for m in mounts_anywhere(supd.root) if "/units/web/" not in m and not m.startswith(web_ns)]
    assert left == [], left
