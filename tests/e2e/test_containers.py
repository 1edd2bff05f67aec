"""Containers through a real supd and the real supctl: namespaces, the merged
root, identity, confinement, init, exec (issue 4).

Every check looks from the outside where it can (the host's /proc of the
main pid) or runs a command inside through `supctl exec`, the same path a
user takes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.e2e.conftest import Supd, wait_for
from tests.helpers.busybox import make_busybox_rootfs

# podman's default capability set (containers/common#1240), by number,
# written out here so the test does not trust supd's own list.
PODMAN_DEFAULT_CAPS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_SYS_CHROOT": 18,
    "CAP_SETFCAP": 31,
}
PODMAN_CAP_MASK = sum(1 << n for n in PODMAN_DEFAULT_CAPS.values())
TINI = Path("/usr/bin/tini-static")
# A pid 1 without a SIGTERM handler ignores SIGTERM (the kernel protects a pid
# namespace's init), so a bare `sleep` would wait out the stop timeout. This one
# exits at once on SIGTERM, like a well-behaved service.
SERVICE = ("/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait")


# --- helpers shared by the container test modules -------------------------------------


def toml_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def container_unit(
    layers: Iterable[Path | str] = (),
    command: Iterable[str] = SERVICE,
    *,
    image: str | None = None,
    writable: str = "ephemeral",
    extra_rootfs: str = "",
    exec_extra: str = "",
    restart: str = "no",
) -> str:
    rootfs = f"layers = {toml_list(str(p) for p in layers)}\n" if not image else f"image = {json.dumps(image)}\n"
    return (
        f"[exec]\ncommand = {toml_list(command)}\n{exec_extra}\n"
        f"[rootfs]\n{rootfs}writable = {json.dumps(writable)}\n{extra_rootfs}\n"
        f'[restart]\npolicy = {json.dumps(restart)}\ndelay = "100ms"\n'
        '[stop]\ntimeout = "5s"\n'
    )


def exec_in(supd: Supd, unit: str, *cmd: str, input: bytes | None = None) -> tuple[int, str, str]:
    r = supd.ctl("exec", unit, "--", *cmd, input=input, timeout=30)
    return r.returncode, r.stdout, r.stderr


def sh(supd: Supd, unit: str, script: str) -> str:
    rc, out, err = exec_in(supd, unit, "/bin/sh", "-c", script)
    assert rc == 0, f"exec {script!r} in {unit}: rc={rc} stdout={out!r} stderr={err!r}"
    return out


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def host_mounts_mentioning(*paths: Path) -> list[str]:
    """Lines of the host's mountinfo that name one of `paths` anywhere: as a
    mount point, or in an overlay's lowerdir/upperdir/workdir options."""
    needles = [str(p) for p in paths]
    with open("/proc/self/mountinfo") as f:
        return [line.rstrip() for line in f if any(n in line for n in needles)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_unit(supd: Supd, name: str, text: str) -> dict[str, object]:
    supd.write_unit(name, text)
    if supd.proc is None:
        supd.start()
    st = supd.wait_state(name, "running", "failed", "exited", timeout=30)
    assert st["state"] == "running", f"{name}: {st}\n{supd.ctl('logs', name).stdout}"
    return st


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="module")
def marker_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second layer: adds /layer2/marker and replaces /etc/motd."""
    root = tmp_path_factory.mktemp("layer2") / "rootfs"
    (root / "layer2").mkdir(parents=True)
    (root / "layer2" / "marker").write_text("from layer 2\n")
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("top layer wins\n")
    return root


# --- tests -------------------------------------------------------------------------


def test_own_processes_hostname_and_merged_root(supd: Supd, busybox_layer: Path, marker_layer: Path) -> None:
    st = start_unit(
        supd,
        "box",
        container_unit(
            [busybox_layer, marker_layer],
            ["/bin/sh", "-c", "echo $$ > /tmp/mypid; exec sleep 1000"],
            extra_rootfs='hostname = "boxhost"\n',
        ),
    )
    pid = st["pid"]
    assert isinstance(pid, int)
    # the command is pid 1 of its own pid namespace
    assert wait_for(lambda: sh(supd, "box", "cat /tmp/mypid 2>/dev/null").strip(), what="/tmp/mypid") == "1"
    ps = sh(supd, "box", "ps -o pid,comm")
    pids = sorted(int(line.split()[0]) for line in ps.splitlines()[1:])
    assert pids[0] == 1 and len(pids) <= 3, ps  # sleep, and the exec'd sh + ps
    assert sh(supd, "box", "cat /proc/1/cmdline | tr '\\0' ' '").split() == ["sleep", "1000"]
    # on the host the same process is a different pid, in other namespaces
    assert pid != 1
    for ns in ("mnt", "pid", "uts", "ipc", "cgroup"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")  # network = host (default)
    assert sh(supd, "box", "hostname").strip() == "boxhost"
    assert socket.gethostname() != "boxhost"
    # merged root: both layers, the top one winning, nothing of the host's root
    assert sh(supd, "box", "cat /layer2/marker") == "from layer 2\n"
    assert sh(supd, "box", "cat /etc/motd") == "top layer wins\n"
    assert sh(supd, "box", "test -x /bin/busybox && echo yes").strip() == "yes"
    assert sh(supd, "box", "test -e /etc/debian_version && echo host || echo own").strip() == "own"
    # seen from the host, the container's / is an overlay
    with open(f"/proc/{pid}/mountinfo") as f:
        root_mounts = [line.split(" - ") for line in f if line.split()[4] == "/"]
    assert root_mounts and root_mounts[-1][1].split()[0] == "overlay", root_mounts


def test_image_unit_whiteouts_and_opaque_dir(supd: Supd, tmp_path: Path) -> None:
    from tests.helpers.oci import ABSENT, PRESENT, build_busybox_image

    image = build_busybox_image(tmp_path / "layout", "v1")
    start_unit(supd, "img", container_unit(image=image.ref))
    script = "; ".join(f"test -e {p} && echo present {p} || echo absent {p}" for p in PRESENT + ABSENT)
    seen = dict(reversed(line.split()) for line in sh(supd, "img", script).splitlines())
    assert {p: seen[p] for p in PRESENT} == {p: "present" for p in PRESENT}
    # every container gets supd's /etc/hostname, over the path the image deleted too
    absent = tuple(p for p in ABSENT if p != "/etc/hostname")
    assert {p: seen[p] for p in absent} == {p: "absent" for p in absent}
    assert sh(supd, "img", "cat /etc/hostname") == "img\n"
    # the opaque dir hides the lower layer's a and b: only c is left
    assert sh(supd, "img", "ls /opt/old").split() == ["c"]
    assert sh(supd, "img", "cat /etc/motd") == "layered\n"
    # imported on first use into the content-addressed store
    assert len(list((supd.state / "layers" / "sha256").iterdir())) == 3


def test_persistent_upper_survives_restart_ephemeral_does_not(supd: Supd, busybox_layer: Path) -> None:
    start_unit(supd, "keep", container_unit([busybox_layer], writable="persistent"))
    start_unit(supd, "fresh", container_unit([busybox_layer], writable="ephemeral"))
    for unit in ("keep", "fresh"):
        sh(supd, unit, "echo kept > /root/note")
        old_pid = supd.status(unit)["pid"]
        r = supd.ctl("restart", unit)
        assert r.returncode == 0, r.stderr
        st = supd.wait_state(unit, "running")
        assert st["pid"] != old_pid
    assert sh(supd, "keep", "cat /root/note") == "kept\n"
    assert sh(supd, "fresh", "test -e /root/note && echo there || echo gone").strip() == "gone"
    # the file lives in the persistent upper on the host, never in the layer
    assert (supd.state / "units" / "keep" / "upper" / "root" / "note").read_text() == "kept\n"
    assert not (busybox_layer / "root" / "note").exists()


def test_readonly_writable_and_binds(supd: Supd, busybox_layer: Path, tmp_path: Path) -> None:
    ro_src, rw_src = tmp_path / "ro", tmp_path / "rw"
    ro_src.mkdir()
    rw_src.mkdir()
    (ro_src / "data").write_text("read me\n")
    binds = (
        f'binds = [{{ source = "{ro_src}", target = "/mnt/ro", readonly = true }},'
        f' {{ source = "{rw_src}", target = "/mnt/rw" }}]\n'
    )
    start_unit(supd, "binds", container_unit([busybox_layer], writable="readonly", extra_rootfs=binds))
    assert sh(supd, "binds", "cat /mnt/ro/data") == "read me\n"
    rc, _out, err = exec_in(supd, "binds", "/bin/sh", "-c", "echo x > /mnt/ro/new")
    assert rc != 0 and "Read-only file system" in err, (rc, err)
    assert not (ro_src / "new").exists()
    sh(supd, "binds", "echo written > /mnt/rw/new")
    assert (rw_src / "new").read_text() == "written\n"
    # writable = readonly: the root itself refuses writes
    rc, _out, err = exec_in(supd, "binds", "/bin/sh", "-c", "echo x > /root/f")
    assert rc != 0 and "Read-only file system" in err, (rc, err)


def test_masked_proc_and_readonly_sys(supd: Supd, busybox_layer: Path) -> None:
    start_unit(supd, "conf", container_unit([busybox_layer]))
    # /proc/kcore is masked: nothing of the host's memory comes out of it
    assert sh(supd, "conf", "head -c 64 /proc/kcore 2>/dev/null | wc -c").strip() == "0"
    assert sh(supd, "conf", "head -c 64 /proc/keys 2>/dev/null | wc -c").strip() == "0"
    rc, _out, err = exec_in(supd, "conf", "/bin/sh", "-c", "mkdir /sys/fs/supdtest_probe")
    assert rc != 0 and "Read-only file system" in err, (rc, err)
    rc, _out, err = exec_in(supd, "conf", "/bin/sh", "-c", "echo 1 > /proc/sysrq-trigger")
    assert rc != 0, err
    assert not Path("/sys/fs/supdtest_probe").exists()


def test_user_nobody_no_new_privs_and_podman_caps(supd: Supd, busybox_layer: Path) -> None:
    st = start_unit(supd, "nob", container_unit([busybox_layer], exec_extra='user = "nobody"\n'))
    root = start_unit(supd, "rooted", container_unit([busybox_layer]))
    status = proc_status(int(st["pid"]))  # type: ignore[arg-type]
    assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
    assert status["Gid"].split() == ["65534"] * 4, status["Gid"]
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapBnd"], 16) == PODMAN_CAP_MASK, status["CapBnd"]
    assert int(status["CapEff"], 16) == 0  # nobody holds no capability
    rstatus = proc_status(int(root["pid"]))  # type: ignore[arg-type]
    assert rstatus["Uid"].split() == ["0"] * 4
    assert rstatus["NoNewPrivs"] == "1"
    assert int(rstatus["CapBnd"], 16) == PODMAN_CAP_MASK
    assert int(rstatus["CapEff"], 16) == PODMAN_CAP_MASK
    # inside, id says the same
    # exec runs as the unit's user unless told otherwise
    assert sh(supd, "nob", "id -u; id -g").split() == ["65534", "65534"]
    r = supd.ctl("exec", "nob", "--user", "app", "--", "id", "-u")
    assert (r.returncode, r.stdout.strip()) == (0, "1000"), r.stderr


def test_network_none_has_only_loopback(supd: Supd, busybox_layer: Path) -> None:
    # busybox's ping opens only raw sockets: it needs NET_RAW, not in the default
    # set any more (iputils' ping falls back on the ICMP sockets that
    # ping_group_range opens to all: test_container_confinement.py)
    st = start_unit(supd, "nonet", container_unit([busybox_layer], extra_rootfs='network = "none"\n',
                                                  exec_extra='cap_add = ["NET_RAW"]\n'))
    assert os.readlink(f"/proc/{st['pid']}/ns/net") != os.readlink("/proc/self/ns/net")
    # /proc/net/dev: two header lines, then one line per interface
    ifaces = [line.split(":")[0].strip() for line in sh(supd, "nonet", "cat /proc/net/dev").splitlines()[2:]]
    assert ifaces == ["lo"], ifaces
    assert "UP" in sh(supd, "nonet", "ip link show lo").split("\n")[0]
    assert sh(supd, "nonet", "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ok").strip() == "ok"


def zombies_inside(supd: Supd, unit: str) -> list[str]:
    # the state is the field after the ")" that closes the command name
    out = sh(supd, unit, "for s in /proc/[0-9]*/stat; do cat $s 2>/dev/null; echo; done")
    return [line for line in out.splitlines() if line.strip() and line.rsplit(")", 1)[1].split()[0] == "Z"]


# Each `(sleep 0.2 &)` leaves an orphan that pid 1 inherits and must reap.
ORPHANS = ["/bin/sh", "-c", "for i in 1 2 3; do (sleep 0.2 &); done; exec sleep 1000"]


@pytest.mark.skipif(not TINI.exists(), reason="needs tini (apt-get install tini)")
def test_init_is_pid1_reaps_zombies_and_forwards_stop(supd: Supd, busybox_layer: Path) -> None:
    st = start_unit(supd, "withinit", container_unit([busybox_layer], ORPHANS, extra_rootfs="init = true\n"))
    start_unit(supd, "noinit", container_unit([busybox_layer], ORPHANS))
    # pid 1 is tini (bound in as /dev/init, like docker's --init), the command pid 2
    assert sh(supd, "withinit", "cat /proc/1/cmdline | tr '\\0' ' '").split()[:2] == ["/dev/init", "--"]
    assert sh(supd, "withinit", "cat /proc/2/cmdline | tr '\\0' ' '").split() == ["sleep", "1000"]
    exe, tini = os.stat(f"/proc/{st['pid']}/exe"), TINI.stat()
    assert (exe.st_dev, exe.st_ino) == (tini.st_dev, tini.st_ino)  # the host's tini, bound in
    wait_for(lambda: not zombies_inside(supd, "withinit"), timeout=15, what="tini reaped the orphans")
    # the control: with `sleep` as pid 1 nobody reaps them
    zombies = wait_for(lambda: zombies_inside(supd, "noinit"), timeout=15, what="zombies without an init")
    assert len(zombies) == 3, zombies
    # tini forwards SIGTERM to the command: the stop is clean and quick
    r = supd.ctl("stop", "withinit")
    assert r.returncode == 0, r.stderr
    last = supd.wait_state("withinit", "inactive")["last_exit"]
    assert last is not None and (last["code"] == 143 or last["signal"] == "SIGTERM"), last
    assert not [e for e in supd.events("withinit") if e["event"] == "kill"]


def test_exec_passes_stdio_and_exit_code(supd: Supd, busybox_layer: Path) -> None:
    start_unit(supd, "ex", container_unit([busybox_layer], extra_rootfs='hostname = "exhost"\n'))
    rc, out, _err = exec_in(supd, "ex", "cat", input=b"hi\n")
    assert (rc, out) == (0, "hi\n")
    rc, out, err = exec_in(supd, "ex", "/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 7")
    assert (rc, out, err) == (7, "to-out\n", "to-err\n")
    rc, _out, _err = exec_in(supd, "ex", "/bin/sh", "-c", "kill -9 $$")
    assert rc == 128 + signal.SIGKILL
    # exec joins the unit's namespaces, root and cgroup
    assert sh(supd, "ex", "hostname").strip() == "exhost"
    cg = sh(supd, "ex", "cat /proc/self/cgroup")
    assert cg and all(line.endswith(":/") for line in cg.splitlines()), cg  # cgroup namespace root = the scope
    rc, _out, err = exec_in(supd, "ex", "/bin/no-such-command")
    assert rc != 0 and "no-such-command" in err, (rc, err)
    # a stopped unit has nothing to exec into
    supd.ctl("stop", "ex")
    supd.wait_state("ex", "inactive")
    rc, _out, err = exec_in(supd, "ex", "true")
    assert rc != 0 and "inactive" in err, (rc, err)


def test_web_example_serves_the_host(supd: Supd, busybox_layer: Path, tmp_path: Path) -> None:
    """Like units/web.toml: busybox httpd under tini, the site bound read-only, an ephemeral upper."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<h1>hello from supd</h1>\n")
    port = free_port()
    text = textwrap.dedent(
        f"""
        [unit]
        description = "busybox httpd in a container"
        slice = "web"

        [exec]
        command = ["/bin/httpd", "-f", "-v", "-p", "{port}", "-h", "/www"]

        [rootfs]
        layers = ["{busybox_layer}"]
        writable = "ephemeral"
        hostname = "web"
        network = "host"
        binds = [{{ source = "{www}", target = "/www", readonly = true }}]
        init = {"true" if TINI.exists() else "false"}

        [resources]
        memory_max = "32M"
        pids_max = 32

        [restart]
        policy = "on-failure"
        """
    )
    start_unit(supd, "web", text)

    def fetch() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return bytes(r.read())
        except OSError:
            return None

    assert wait_for(fetch, timeout=15, interval=0.1, what="httpd answers") == b"<h1>hello from supd</h1>\n"
    assert "supd-web.slice" in str(supd.status("web")["cgroup"])
