"""Device rules of containers through a real supd and the real supctl
(issue 11): docker's default allow-list on the scope, whatever node a
container makes or its image ships; `[rootfs].devices` grants more.

Probes only open nodes (busybox `true > node`, `true < node`) and never
read or write them, so a rule that failed to refuse would still leave
nothing in the host's kernel log or on a disk. Every probe runs through
`supctl exec`: exec'd processes share the scope, so they share its rules;
one unit also probes from its main process.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.e2e.test_containers import container_unit, exec_in, sh, start_unit
from tests.e2e.test_containers_teardown import mounts_anywhere
from tests.helpers.busybox import make_busybox_rootfs

EPERM = "Operation not permitted"


def host_block_device() -> tuple[int, int]:
    """major:minor of a real block device of this host (its first disk)."""
    for name in sorted(os.listdir("/sys/class/block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        major, minor = (int(n) for n in Path(f"/sys/class/block/{name}/dev").read_text().split(":"))
        return major, minor
    return 7, 0  # a loop device, if nothing else


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="module")
def hostile_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layer shipping world-usable device nodes, as a hostile image would:
    /opt/kmsg (c 1:11: opening it write-only needs no privilege), /opt/disk
    (the host's first disk), /opt/fuse (c 10:229), all mode 0666."""
    root = tmp_path_factory.mktemp("hostile") / "rootfs"
    (root / "opt").mkdir(parents=True)
    major, minor = host_block_device()
    for name, kind, numbers in (("kmsg", stat.S_IFCHR, (1, 11)), ("disk", stat.S_IFBLK, (major, minor)),
                                ("fuse", stat.S_IFCHR, (10, 229))):  # fmt: skip
        os.mknod(root / "opt" / name, kind | 0o666, os.makedev(*numbers))
        os.chmod(root / "opt" / name, 0o666)
    return root


def refused(supd: Supd, unit: str, script: str, *user: str) -> str:
    """Run `script` (which must fail) and return its stderr."""
    r = supd.ctl("exec", *user, unit, "--", "/bin/sh", "-c", script, timeout=30)
    assert r.returncode != 0, (script, r.stdout, r.stderr)
    return r.stderr


def test_root_cannot_mknod_and_use_a_host_device(supd: Supd, busybox_layer: Path) -> None:
    # By default CAP_MKNOD is gone (podman's set): mknod itself is refused.
    start_unit(supd, "dev", container_unit([busybox_layer]))
    out = sh(supd, "dev", "exec 2>&1; mknod /tmp/x c 1 11 && echo MADE; true")
    assert "MADE" not in out and EPERM in out, out
    # Given CAP_MKNOD back, the node can be made (the `m` rule) but not used:
    # the device rules refuse the open, whoever made the node.
    start_unit(supd, "mk", container_unit([busybox_layer], exec_extra='cap_add = ["MKNOD"]'))
    major, minor = host_block_device()
    for node, numbers, redirect in (("/tmp/x", "c 1 11", ">"), ("/tmp/blk", f"b {major} {minor}", "<")):
        out = sh(supd, "mk", f"exec 2>&1; mknod {node} {numbers} && echo MADE && (true {redirect} {node} && echo OPENED); true")
        assert "MADE" in out and "OPENED" not in out and EPERM in out, out
        assert sh(supd, "mk", f"ls -l {node}").startswith(("c", "b"))


def test_standard_devices_work(supd: Supd, busybox_layer: Path) -> None:
    start_unit(supd, "std", container_unit([busybox_layer]))
    assert sh(supd, "std", "head -c 4 /dev/urandom | wc -c; head -c 3 /dev/zero | wc -c; head -c 2 /dev/random | wc -c").split() == ["4", "3", "2"]
    assert sh(supd, "std", "echo gone > /dev/null && cat /dev/null && echo ok").strip() == "ok"
    assert "No space left on device" in refused(supd, "std", "echo x > /dev/full")
    # /dev/tty: allowed by the rules; there is no controlling terminal (ENXIO, not EPERM)
    err = refused(supd, "std", "true < /dev/tty")
    assert "No such device or address" in err, err
    # ptmx allocates a pseudo terminal; its /dev/pts node is allowed (locked until
    # unlockpt: EIO, not EPERM)
    out = sh(supd, "std", "exec 2>&1; ( exec 3<>/dev/ptmx; ls /dev/pts; true < /dev/pts/0 ); true")
    assert "0" in out.split() and EPERM not in out, out


def test_image_shipped_nodes_refused_to_nobody_and_root(
    supd: Supd, busybox_layer: Path, hostile_layer: Path
) -> None:
    probe = "exec 2>&1; true > /opt/kmsg && echo KMSG-OPENED; true < /opt/disk && echo DISK-OPENED; true <> /opt/fuse && echo FUSE-OPENED; true"
    text = container_unit(
        [busybox_layer, hostile_layer],
        ["/bin/sh", "-c", f"{probe}; echo PROBED; exec sleep 1000 2>/dev/null"],
        writable="readonly",
        extra_rootfs='network = "none"\n',
        exec_extra='user = "nobody"\n',
    )
    st = start_unit(supd, "ship", text)
    assert Path(f"/proc/{st['pid']}/status").read_text().count("65534") >= 2
    # the main process probed at start (its output is the unit's log)
    def probed() -> str | None:
        out = supd.ctl("logs", "ship").stdout
        return out if "PROBED" in out else None

    log = wait_for(probed, timeout=20, what="probe output")
    assert "OPENED" not in log and log.count(EPERM) == 3, log
    # exec'd as nobody and as root: refused the same way (one scope, one set of rules)
    for user in ((), ("--user", "0")):
        out = supd.ctl("exec", *user, "ship", "--", "/bin/sh", "-c", probe).stdout
        assert "OPENED" not in out and out.count(EPERM) == 3, (user, out)


def test_devices_key_creates_and_allows_the_node(supd: Supd, busybox_layer: Path, hostile_layer: Path) -> None:
    grants = [d for d in ("/dev/fuse", "/dev/net/tun") if os.path.exists(d)]
    if not grants:
        pytest.skip("neither /dev/fuse nor /dev/net/tun on this host")
    entries = ", ".join(f'"{d}:rw"' if d.endswith("tun") else f'"{d}"' for d in grants)
    start_unit(supd, "grant", container_unit([busybox_layer, hostile_layer], extra_rootfs=f"devices = [{entries}]\n"))
    for device in grants:
        host = os.stat(device)
        listing = sh(supd, "grant", f"ls -ln {device}").split()
        assert listing[0][0] == "c" and listing[0][1:] == stat.filemode(host.st_mode)[1:], listing
        assert listing[4:6] == [f"{os.major(host.st_rdev)},", str(os.minor(host.st_rdev))], listing
        assert sh(supd, "grant", f"true <> {device} && echo opened").strip() == "opened"
    if "/dev/fuse" in grants:
        # the grant is by type and number: the image's own c 10:229 node opens too
        assert sh(supd, "grant", "true <> /opt/fuse && echo opened").strip() == "opened"
    # nothing else was granted
    assert EPERM in refused(supd, "grant", "true > /opt/kmsg")
    # and a container without the key has no such node
    start_unit(supd, "nogrant", container_unit([busybox_layer]))
    rc, _out, _err = exec_in(supd, "nogrant", "ls", grants[0])
    assert rc != 0


@pytest.fixture
def host_regular_file() -> Iterator[str]:
    """A regular file under the host's /dev (removed afterwards)."""
    path = Path(f"/dev/supdtest-{uuid.uuid4().hex[:8]}")
    path.write_text("not a device\n")
    try:
        yield str(path)
    finally:
        path.unlink()


def test_bad_devices_entries_fail_clearly_and_leave_nothing(
    supd: Supd, busybox_layer: Path, host_regular_file: str
) -> None:
    real = next((d for d in ("/dev/fuse", "/dev/net/tun") if os.path.exists(d)), None)
    first = [f'"{real}"'] if real else []
    regdev_entries = ", ".join([*first, f'"{host_regular_file}:r"'])
    cases = {
        "nodev": ('devices = ["/dev/supdtest-no-such-node"]',
                  ["[rootfs].devices[0]", '"/dev/supdtest-no-such-node" does not exist on this host']),
        "regdev": (f"devices = [{regdev_entries}]",
                   [f"[rootfs].devices[{len(first)}]", f'"{host_regular_file}" is a regular file on this host',
                    "expected a character or block device"]),
    }  # fmt: skip
    for name, (extra, _needles) in cases.items():
        supd.write_unit(name, container_unit([busybox_layer], extra_rootfs=extra + "\n"))
    if supd.proc is None:
        supd.start()
    for name, (_extra, needles) in cases.items():
        st = supd.wait_state(name, "failed", "running", "exited", timeout=30)
        assert st["state"] == "failed", (name, st)
        assert st["error"].startswith(str(supd.units / f"{name}.toml")), st["error"]
        for needle in needles:
            assert needle in st["error"], (name, needle, st["error"])
        assert st["pid"] is None and st["cgroup"] is None
        assert supd.scope_dirs(name) == []
        assert not (supd.runtime / "units" / name).exists()
    # a syntax problem is found when the file is read: state error
    supd.write_unit("synt", container_unit([busybox_layer], extra_rootfs='devices = ["/etc/passwd"]\n'))
    st = supd.wait_state("synt", "error", "failed", "running", timeout=30)
    assert st["state"] == "error" and "[rootfs].devices[0]" in st["error"], st
    assert mounts_anywhere(supd.root) == []


def test_nothing_left_after_stop(supd: Supd, busybox_layer: Path) -> None:
    extra = 'devices = ["/dev/fuse"]\n' if os.path.exists("/dev/fuse") else ""
    start_unit(supd, "gone", container_unit([busybox_layer], extra_rootfs=extra))
    assert supd.scope_dirs("gone")
    assert supd.ctl("stop", "gone").returncode == 0
    supd.wait_state("gone", "inactive")
    assert supd.scope_dirs("gone") == []
    assert mounts_anywhere(supd.root) == []
