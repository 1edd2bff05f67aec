"""/etc/hosts, /etc/resolv.conf and /etc/hostname through a real supd and the
real supctl: what a process in the container reads, over whatever the image
shipped; read-only in a readonly root; writable by a userns container's root;
kept across a kill -9 of supd; gone, with nothing mounted, after a stop; and
bad [rootfs].hosts / [rootfs].dns as unit-file errors."""

from __future__ import annotations

import ipaddress
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, pid_alive, wait_for
from tests.e2e.test_containers import container_unit, exec_in, sh, start_unit
from tests.e2e.test_containers_teardown import mounts_anywhere
from tests.e2e.test_live_restore import shut_down_for_real
from tests.e2e.test_userns import BLOCK, use_subids
from tests.helpers.busybox import make_busybox_rootfs

START = 3_400_000  # a subuid block far from real users and the other userns tests


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="module")
def image_etc_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What images ship: an /etc/hosts of their own, and resolv.conf as the
    link systemd images have (dangling in the image)."""
    root = tmp_path_factory.mktemp("image-etc") / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("6.6.6.6\tlocalhost\n")
    (root / "etc" / "hostname").write_text("image-hostname\n")
    os.symlink("../run/systemd/resolve/stub-resolv.conf", root / "etc" / "resolv.conf")
    return root


def host_nameservers_without_loopback() -> list[str]:
    """What the host's own /etc/resolv.conf says, less its loopback servers."""
    servers = []
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            if not ipaddress.ip_address(fields[1].split("%")[0]).is_loopback:
                servers.append(fields[1])
    return servers


def entries(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def nameservers(text: str) -> list[str]:
    return [fields[1] for fields in entries(text) if fields[0] == "nameserver"]


def test_files_images_expect_override_the_image_and_go_at_stop(
    supd: Supd, busybox_layer: Path, image_etc_layer: Path
) -> None:
    extra = 'hostname = "web"\nnetwork = "none"\nhosts = { "db.local" = "10.1.2.3", "v6.local" = "fd00::3" }\n'
    start_unit(supd, "web", container_unit([busybox_layer, image_etc_layer], extra_rootfs=extra))
    assert sh(supd, "web", "cat /etc/hostname") == "web\n"
    hosts = entries(sh(supd, "web", "cat /etc/hosts"))
    assert ["6.6.6.6", "localhost"] not in hosts
    assert ["127.0.0.1", "localhost"] in hosts
    assert ["::1", "localhost", "ip6-localhost", "ip6-loopback"] in hosts
    assert ["10.1.2.3", "db.local"] in hosts and ["fd00::3", "v6.local"] in hosts
    assert ["127.0.0.1", "web"] in hosts  # no address of its own: its name still resolves
    # the image's link stays, and leads to supd's file inside the root
    assert sh(supd, "web", "readlink /etc/resolv.conf").strip() == "../run/systemd/resolve/stub-resolv.conf"
    resolv = sh(supd, "web", "cat /etc/resolv.conf")
    assert nameservers(resolv) == (host_nameservers_without_loopback() or ["8.8.8.8", "8.8.4.4"])
    # writable (as under docker), and the write is the host file's
    sh(supd, "web", "echo '10.5.5.5 added' >> /etc/hosts")
    assert "10.5.5.5 added" in (supd.runtime / "units" / "web" / "etc" / "hosts").read_text()
    assert (image_etc_layer / "etc" / "hosts").read_text() == "6.6.6.6\tlocalhost\n"
    assert not (image_etc_layer / "run").exists()
    assert supd.ctl("stop", "web").returncode == 0
    supd.wait_state("web", "inactive", "exited")
    assert not (supd.runtime / "units" / "web").exists()
    assert mounts_anywhere(supd.root) == []


def test_dns_key_readonly_root_and_userns_root(supd: Supd, busybox_layer: Path) -> None:
    use_subids(supd, f"supd:{START}:{2 * BLOCK}\n")
    start_unit(
        supd, "ro",
        container_unit([busybox_layer], writable="readonly", extra_rootfs='dns = ["1.1.1.1", "2606:4700:4700::1111"]\n'),
    )  # fmt: skip
    assert nameservers(sh(supd, "ro", "cat /etc/resolv.conf")) == ["1.1.1.1", "2606:4700:4700::1111"]
    rc, _out, err = exec_in(supd, "ro", "/bin/sh", "-c", "echo x >> /etc/hosts")
    assert rc != 0 and "Read-only file system" in err, (rc, err)
    assert sh(supd, "ro", "cat /etc/hostname") == "ro\n"

    start_unit(supd, "mapped", container_unit([busybox_layer], extra_rootfs='userns = "auto"\nnetwork = "none"\n'))
    out = sh(supd, "mapped", "id -u; stat -c '%u:%g' /etc/hosts /etc/resolv.conf; echo '10.6.6.6 mine' >> /etc/hosts && cat /etc/hosts")
    lines = out.splitlines()
    assert lines[:3] == ["0", "0:0", "0:0"]  # container root owns them, as under docker
    assert "10.6.6.6 mine" in lines
    host_file = supd.runtime / "units" / "mapped" / "etc" / "hosts"
    assert (host_file.stat().st_uid, host_file.stat().st_gid) == (START, START)
    for unit in ("ro", "mapped"):
        assert supd.ctl("stop", unit).returncode == 0
        supd.wait_state(unit, "inactive", "exited")
        assert not (supd.runtime / "units" / unit).exists()
    assert mounts_anywhere(supd.root) == []


def test_files_survive_a_kill_9_of_supd_and_go_after(supd: Supd, busybox_layer: Path) -> None:
    supd.extra_args = ["--live-restore"]
    st = start_unit(supd, "kept", container_unit([busybox_layer], extra_rootfs='hosts = { "db.local" = "10.1.2.3" }\n'))
    host_file = supd.runtime / "units" / "kept" / "etc" / "hosts"
    inode = host_file.stat().st_ino
    supd.stop(signal.SIGKILL)
    host_file.write_text("lost\n")  # what supd wrote is gone: the next one rebuilds it
    assert host_file.stat().st_ino == inode
    supd.start()
    st2 = supd.wait_state("kept", "running")
    assert st2["pid"] == st["pid"] and pid_alive(int(st["pid"]))  # type: ignore[arg-type]
    # rewritten in place: the running container still sees the same file
    assert host_file.stat().st_ino == inode
    inside = entries(sh(supd, "kept", "cat /etc/hosts"))
    assert ["10.1.2.3", "db.local"] in inside and ["lost"] not in inside
    shut_down_for_real(supd)  # a supd that re-adopted it, stopping it with itself
    assert not pid_alive(int(st["pid"]))  # type: ignore[arg-type]
    assert not (supd.runtime / "units" / "kept").exists()
    assert mounts_anywhere(supd.root) == []


def test_unit_that_died_while_supd_was_down_leaves_no_files(supd: Supd, busybox_layer: Path) -> None:
    supd.extra_args = ["--live-restore"]
    # not enabled: the next supd has no reason to start it again
    supd.write_unit("dead", container_unit([busybox_layer]) + "[unit]\nenabled = false\n")
    supd.start()
    assert supd.ctl("start", "dead").returncode == 0
    st = supd.wait_state("dead", "running")
    assert (supd.runtime / "units" / "dead" / "etc" / "hosts").is_file()
    supd.stop(signal.SIGKILL)
    os.kill(int(st["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
    wait_for(lambda: not pid_alive(int(st["pid"])), what="the container gone")  # type: ignore[arg-type]
    supd.start()
    supd.wait_state("dead", "inactive", "exited", "failed")
    assert not (supd.runtime / "units" / "dead").exists()
    assert "rootfs_dir_not_empty" not in supd.daemon_log()
    shut_down_for_real(supd)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('hosts = { "db.local" = "10.1.2" }', '[rootfs].hosts."db.local": expected an IPv4 or IPv6 address'),
        ('hosts = { "bad_name" = "10.1.2.3" }', "[rootfs].hosts.bad_name: expected a hostname key"),
        ('hosts = ["db.local"]', "[rootfs].hosts: expected a table of hostname = address"),
        ('dns = ["1.1.1.1", "resolver"]', '[rootfs].dns[1]: expected an IPv4 or IPv6 address like "10.1.2.3"'),
        ('dns = "1.1.1.1"', "[rootfs].dns: expected a list of at most 3 IP addresses"),
    ],
)
def test_bad_hosts_and_dns_are_unit_file_errors(supd: Supd, busybox_layer: Path, line: str, needle: str) -> None:
    good = start_unit(supd, "good", container_unit([busybox_layer]))
    path = supd.write_unit("bad", container_unit([busybox_layer], extra_rootfs=line + "\n"))
    st = supd.wait_state("bad", "error", "failed", "running", timeout=30)
    assert st["state"] == "error", st
    assert st["error"].startswith(f"{path}: {needle}"), st["error"]
    assert not (supd.runtime / "units" / "bad").exists()
    assert supd.status("good")["pid"] == good["pid"]


def test_a_readonly_roots_resolv_conf_link_into_run_leads_to_supds_file(
    supd: Supd, busybox_layer: Path, image_etc_layer: Path
) -> None:
    # /run is the readonly root's scratch tmpfs: the file the link leads to is
    # made in that tmpfs, not under it where the tmpfs would hide it
    extra = 'dns = ["1.1.1.1"]\n'
    start_unit(supd, "rolink", container_unit([busybox_layer, image_etc_layer], writable="readonly", extra_rootfs=extra))
    assert sh(supd, "rolink", "grep -c ' /run tmpfs ' /proc/mounts") == "1\n"
    assert sh(supd, "rolink", "readlink /etc/resolv.conf").strip() == "../run/systemd/resolve/stub-resolv.conf"
    assert nameservers(sh(supd, "rolink", "cat /etc/resolv.conf")) == ["1.1.1.1"]
    assert supd.ctl("stop", "rolink").returncode == 0
    supd.wait_state("rolink", "inactive", "exited")
    assert mounts_anywhere(supd.root) == []
