"""supd as a systemd service, for real: the .deb built by packaging/build-deb.sh
is installed with dpkg inside a sandbox whose PID 1 is systemd 252, then
driven with systemctl and supctl inside that sandbox.

The sandbox is this module's own (booted with tests/systemd/sandbox.py's
`boot`), not the session one: installing a package and running a supd that
cleans up stale `supd-*.scope` units must not disturb other systemd tests.
Everything written lands in the sandbox's overlay and vanishes with it.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.busybox import make_busybox_rootfs
from tests.helpers.deb import REPO, built_deb
from tests.helpers.oci import umoci
from tests.systemd.conftest import booted, wait_for
from tests.systemd.sandbox import Sandbox

# Building the .deb and booting + installing into the sandbox take two minutes
# and more (10+ on a loaded host) under the pure-v2 VM's software emulation,
# beyond the suite's 120 s default: the first test pays for the module fixtures.
pytestmark = [pytest.mark.systemd, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1800)]

SERVICE = "supd.service"
HOST_LEFTOVERS = (
    "/etc/supd",
    "/etc/systemd/system/supd.service",
    "/etc/systemd/system/supd.service.d",
    "/etc/tmpfiles.d/supd.conf",
    # a container image's "start no service" policy (this host is one): the
    # maintainer scripts honour it through deb-systemd-invoke, as they should,
    # but the sandbox is a booted system where postinst must start supd
    "/usr/sbin/policy-rc.d",
)
SITE_PACKAGES = "/opt/supd/lib/python3.11/site-packages"
# the README's container example, its image served by a registry inside the
# sandbox (its network namespace is its own: nothing reaches the host's)
# (not 5000: Debian's docker-registry.service, enabled on this host, boots in the sandbox too)
REGISTRY_PORT = 5123
IMAGE_NAME = "library/busybox:1.36"
LIVE_RESTORE_CONFIG = """\
# written by tests/systemd/test_service.py: the packaged defaults (live_restore = true)
socket_group = "supd"
"""


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_deb(tmp_path_factory)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from booted(tmp_path_factory, "service")


class Inside:
    """Commands and files inside the sandbox."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box

    def path(self, inner: str) -> Path:
        # the sandbox's own view of its root (its /var/tmp is a tmpfs that
        # the overlay mount on the host does not show)
        return Path(f"/proc/{self.box.leader_pid}/root") / inner.lstrip("/")

    def run(self, *argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.box.exec(list(argv), timeout=timeout)

    def ok(self, *argv: str, timeout: float = 120.0) -> str:
        res = self.run(*argv, timeout=timeout)
        assert res.returncode == 0, f"{' '.join(argv)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        return res.stdout

    def show(self, *props: str) -> dict[str, str]:
        out = self.ok("systemctl", "show", SERVICE, "-p", ",".join(props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.run("journalctl", "-u", SERVICE, "--no-pager", "-n", "80").stdout

    def unit_status(self, name: str) -> dict[str, Any] | None:
        res = self.run("supctl", "status", name, "--json")
        if res.returncode == 4 or not res.stdout.strip():
            return None
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError:
            return None

    def wait_active(self, what: str) -> dict[str, str]:
        def active() -> dict[str, str] | None:
            props = self.show("ActiveState", "SubState", "MainPID", "StatusText", "NRestarts")
            if props.get("ActiveState") == "failed":
                raise AssertionError(f"supd failed while waiting for {what}:\n{self.journal()}")
            return props if props.get("ActiveState") == "active" else None

        try:
            return wait_for(active, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.journal()}") from None


def pid_alive_inside(inside: Inside, pid: int) -> bool:
    stat = inside.path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@pytest.fixture(scope="module")
def inside(deb: Path, sandbox: Sandbox) -> Inside:
    """The package installed in the sandbox, supd running with live_restore = true."""
    inside = Inside(sandbox)
    # The sandbox's root is an overlay of the host's: a supd set up on the
    # host by hand (a test VM) must not turn this into an upgrade with a
    # conffile prompt or a unit override. Removed in the overlay only.
    for leftover in HOST_LEFTOVERS:
        inside.ok("rm", "-rf", leftover)
    inside.ok("systemctl", "daemon-reload")
    # postinst creates the group and folders, reloads systemd, and enables +
    # starts supd (first install)
    shutil.copy(deb, inside.path(f"/var/tmp/{deb.name}"))
    installed = inside.run("dpkg", "-i", f"/var/tmp/{deb.name}", timeout=300)
    assert installed.returncode == 0, f"dpkg -i failed:\n{installed.stdout}\n{installed.stderr}"
    return inside


def test_package_installs_and_supd_becomes_ready(inside: Inside) -> None:
    assert inside.ok("getent", "group", "supd").startswith("supd:")
    assert oct(inside.path("/var/lib/supd").stat().st_mode & 0o777) == "0o700"
    assert inside.path("/etc/supd/units").is_dir()
    assert inside.ok("systemctl", "is-enabled", SERVICE).strip() == "enabled"
    # Type=notify: "active" only once supd has sent READY=1
    props = inside.wait_active("supd to become active after install")
    assert props["SubState"] == "running"
    assert "units:" in props["StatusText"], props
    assert inside.path("/run/supd/supd.sock").exists()
    unit = inside.show("Delegate", "KillMode", "WatchdogUSec", "NotifyAccess", "Type")
    assert unit == {
        "Delegate": "yes",
        "KillMode": "process",
        "WatchdogUSec": "30s",
        "NotifyAccess": "main",
        "Type": "notify",
    }


def test_package_installs_man_pages_and_completions(inside: Inside) -> None:
    for page in ("man1/supctl.1.gz", "man5/supd.toml.5.gz", "man5/supd.unit.5.gz", "man8/supd.8.gz"):
        with gzip.open(inside.path(f"/usr/share/man/{page}"), "rt") as f:
            assert f.read().startswith(".\\\" Automatically generated by Pandoc"), page
    bash = inside.path("/usr/share/bash-completion/completions/supctl").read_text()
    assert "complete -o bashdefault -F _shtab_supctl supctl" in bash
    assert inside.ok("bash", "-n", "/usr/share/bash-completion/completions/supctl") == ""
    assert inside.path("/usr/share/zsh/vendor-completions/_supctl").read_text().startswith("#compdef supctl")
    assert "complete -c supctl" in inside.path("/usr/share/fish/vendor_completions.d/supctl.fish").read_text()


def test_postinst_compiled_the_venv_and_nothing_else_was_shipped_compiled(inside: Inside, deb: Path) -> None:
    # the package has no __pycache__ (lintian); postinst compiled the venv
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "__pycache__" not in listing
    compiled = list(inside.path(f"{SITE_PACKAGES}/supervisor/cli/__pycache__").glob("*.cpython-311.pyc"))
    assert compiled, "postinst did not byte-compile the venv"


INDEX_HTML = "<h1>supd's README example</h1>\n"


def busybox_image(work: Path) -> Path:
    """An OCI layout tagged 1.36: busybox (with /etc/passwd's nobody) and
    /var/www/index.html, what the README's example serves."""
    layout, bundle = work / "layout", work / "bundle"
    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:1.36")
    umoci("unpack", "--image", f"{layout}:1.36", str(bundle))
    make_busybox_rootfs(bundle / "rootfs")
    (bundle / "rootfs/var/www").mkdir(parents=True, exist_ok=True)
    (bundle / "rootfs/var/www/index.html").write_text(INDEX_HTML)
    umoci("repack", "--image", f"{layout}:1.36", str(bundle))
    return layout


def readme_unit(image: str) -> str:
    """The unit file of the README's "What a unit looks like", its image swapped."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## What a unit looks like", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert 'image = "busybox:1.36"' in block, block
    return block.replace('image = "busybox:1.36"', f'image = "{image}"')


def test_readme_container_example_runs_on_a_fresh_install(inside: Inside, tmp_path: Path) -> None:
    """The README's example unit, its image got with `supctl image pull` (skopeo
    is a dependency of the package), serving HTTP on its published port."""
    layout = busybox_image(tmp_path)
    shutil.copytree(layout, inside.path("/var/tmp/busybox-layout"))
    reg = "/var/tmp/registry"
    inside.path(reg).mkdir()
    inside.path(f"{reg}/config.json").write_text(json.dumps({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": f"{reg}/storage"}},
        "http": {"addr": f"127.0.0.1:{REGISTRY_PORT}"},
    }))
    # a transient service of the sandbox's systemd: it ends with the sandbox
    inside.ok("systemd-run", "--unit=supdtest-registry", "/usr/bin/docker-registry", "serve", f"{reg}/config.json")
    try:
        wait_for(lambda: inside.run("curl", "-sf", f"http://127.0.0.1:{REGISTRY_PORT}/v2/").returncode == 0,
                 timeout=30, what="the registry in the sandbox")
    except AssertionError as e:
        log = inside.run("journalctl", "-u", "supdtest-registry", "--no-pager").stdout
        raise AssertionError(f"{e}\n{log}") from None
    ref = f"127.0.0.1:{REGISTRY_PORT}/{IMAGE_NAME}"
    inside.ok("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:/var/tmp/busybox-layout:1.36", f"docker://{ref}")
    pulled = inside.run("supctl", "image", "pull", ref, timeout=300)
    assert pulled.returncode == 0, f"supctl image pull:\n{pulled.stdout}\n{pulled.stderr}\n{inside.journal()}"
    # The sandbox's root is an overlay of the host's, and overlayfs refuses an
    # upper layer on overlayfs: the units' writable layers get a tmpfs here
    # (on a real install they are on the host's disk). Removed again below.
    inside.ok("mount", "-t", "tmpfs", "-o", "mode=0700", "supdtest-upper", "/var/lib/supd/units")
    inside.path("/etc/supd/units/web.toml").write_text(readme_unit(ref))
    try:
        try:
            wait_for(lambda: (inside.unit_status("web") or {}).get("state") == "running", timeout=90, what="web to run")
            page = wait_for(lambda: (r := inside.run("curl", "-sf", "http://127.0.0.1:8080/")).returncode == 0 and r.stdout,
                            timeout=30, what="the web unit to answer on 8080")
        except AssertionError as e:
            status = inside.run("supctl", "status", "web")
            logs = inside.run("supctl", "logs", "web")
            raise AssertionError(f"{e}\n{status.stdout}{status.stderr}\n{logs.stdout}{logs.stderr}\n{inside.journal()}") from None
        assert page == INDEX_HTML, page
    finally:
        inside.path("/etc/supd/units/web.toml").unlink()
        wait_for(lambda: inside.unit_status("web") is None, timeout=60, what="the web unit to go away")
        inside.ok("umount", "/var/lib/supd/units")


@pytest.fixture(scope="module")
def running_unit(inside: Inside) -> tuple[str, int]:
    """live_restore = true (applied by a restart while there are no units),
    then one unit dropped into the units folder and running."""
    first = inside.wait_active("supd to become active after install")
    inside.path("/etc/supd/supd.toml").write_text(LIVE_RESTORE_CONFIG)
    inside.ok("systemctl", "restart", SERVICE)
    props = inside.wait_active("supd to come back after the config change")
    assert props["MainPID"] != first["MainPID"]
    name = "svc" + os.urandom(4).hex()
    inside.path(f"/etc/supd/units/{name}.toml").write_text(
        '[unit]\ndescription = "service test"\n\n[exec]\ncommand = ["/bin/sleep", "100000"]\n'
    )
    status = wait_for(
        lambda: (s := inside.unit_status(name)) and s.get("state") == "running" and s.get("pid") and s,
        what=f"{name} to run",
    )
    return name, int(status["pid"])


def test_unit_runs_and_both_status_commands_agree(inside: Inside, running_unit: tuple[str, int]) -> None:
    name, unit_pid = running_unit
    assert pid_alive_inside(inside, unit_pid)
    assert inside.run("supctl", "status", name).returncode == 0
    assert inside.run("supctl", "status", "nosuchunit").returncode == 4
    human = inside.run("systemctl", "status", SERVICE, "--no-pager")
    assert human.returncode == 0 and "active (running)" in human.stdout, human.stdout
    # socket_group = "supd": the control socket is root:supd 0660
    sock = inside.path("/run/supd/supd.sock").stat()
    assert oct(sock.st_mode & 0o777) == "0o660"
    assert inside.ok("getent", "group", "supd").split(":")[2] == str(sock.st_gid)


def test_reload_rereads_units_and_stays_active(inside: Inside, running_unit: tuple[str, int]) -> None:
    name, unit_pid = running_unit
    supd_pid = inside.show("MainPID")["MainPID"]
    inside.ok("systemctl", "reload", SERVICE)  # ExecReload: SIGHUP
    props = inside.wait_active("supd to finish the reload")
    assert props["MainPID"] == supd_pid
    assert (inside.unit_status(name) or {}).get("pid") == unit_pid


def test_restart_with_live_restore_keeps_the_unit_process(inside: Inside, running_unit: tuple[str, int]) -> None:
    _name, unit_pid = running_unit
    supd_pid = inside.show("MainPID")["MainPID"]
    inside.ok("systemctl", "restart", SERVICE)
    props = inside.wait_active("supd to come back after a restart")
    assert props["MainPID"] != supd_pid
    # KillMode=process: systemd signalled supd only, and supd (live_restore)
    # left the unit alone
    assert pid_alive_inside(inside, unit_pid), f"the unit's process died with the restart\n{inside.journal()}"


def test_restart_with_live_restore_readopts_the_unit(inside: Inside, running_unit: tuple[str, int]) -> None:
    name, unit_pid = running_unit
    supd_pid = inside.show("MainPID")["MainPID"]
    inside.ok("systemctl", "restart", SERVICE)
    inside.wait_active("supd to come back after a restart")
    assert inside.show("MainPID")["MainPID"] != supd_pid

    def adopted() -> dict[str, Any] | None:
        status = inside.unit_status(name)
        return status if status and status.get("state") == "running" else None

    try:
        status = wait_for(adopted, timeout=30, what=f"{name} to be re-adopted")
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus: {inside.unit_status(name)}\n{inside.journal()}") from None
    assert status["pid"] == unit_pid, f"re-adopted unit runs a new process: {status}"


def test_watchdog_pings_keep_supd_alive(inside: Inside) -> None:
    # WatchdogSec=30s in the shipped unit; shortened here with a drop-in so
    # that a supd that never pings would be killed (SIGABRT) and restarted
    # well within the test. supd pings every WatchdogSec/2.
    dropin = inside.path("/etc/systemd/system/supd.service.d/supdtest-watchdog.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nWatchdogSec=3s\n")
    inside.ok("systemctl", "daemon-reload")
    inside.ok("systemctl", "restart", SERVICE)
    before = inside.wait_active("supd to start with a 3 s watchdog")
    assert inside.show("WatchdogUSec")["WatchdogUSec"] == "3s"
    # three watchdog periods; a missed ping would have ended this supd
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = inside.show("ActiveState", "MainPID", "NRestarts")
        assert now["MainPID"] == before["MainPID"], f"supd was restarted:\n{inside.journal()}"
        assert now["ActiveState"] == "active"
    assert "watchdog timeout" not in inside.journal().lower()
    dropin.unlink()
    inside.ok("systemctl", "daemon-reload")


def test_stop_without_live_restore_stops_the_units(inside: Inside, running_unit: tuple[str, int]) -> None:
    # KillMode=process leaves the units to supd: with live_restore = false it
    # must stop them itself before it exits.
    name, _ = running_unit
    inside.path("/etc/supd/supd.toml").write_text('socket_group = "supd"\nlive_restore = false\n')
    inside.ok("systemctl", "restart", SERVICE)  # the old supd (live_restore) detaches
    inside.wait_active("supd to come back with live_restore = false")
    status = wait_for(
        lambda: (s := inside.unit_status(name)) and s.get("state") == "running" and s.get("pid") and s,
        what=f"{name} to run under the new supd",
    )
    unit_pid = int(status["pid"])
    inside.ok("systemctl", "stop", SERVICE, timeout=120)
    assert inside.show("ActiveState")["ActiveState"] == "inactive"
    wait_for(lambda: not pid_alive_inside(inside, unit_pid), timeout=30, what=f"{name} (pid {unit_pid}) to end")


def test_units_supd_stopped_come_back_when_it_starts(inside: Inside, running_unit: tuple[str, int]) -> None:
    # issue 10: after a stop with live_restore = false the unit stayed `exited`
    name, _ = running_unit
    assert inside.show("ActiveState")["ActiveState"] == "inactive"  # left so by the test above
    inside.ok("systemctl", "start", SERVICE)
    inside.wait_active("supd to start again")
    wait_for(
        lambda: (s := inside.unit_status(name)) and s.get("state") == "running" and s,
        what=f"{name} to run again\n{inside.journal()}",
    )


def test_reboot_with_the_state_folder_kept_brings_every_unit_back(inside: Inside, running_unit: tuple[str, int]) -> None:
    # issue 10: after a reboot every enabled unit starts fresh, whatever its
    # restart policy (the default is "no") and even if a user had stopped it
    name, _ = running_unit
    inside.path("/etc/supd/supd.toml").write_text(LIVE_RESTORE_CONFIG)
    inside.ok("systemctl", "restart", SERVICE)
    inside.wait_active("supd to come back with live_restore = true")
    stopped = "off" + os.urandom(4).hex()
    inside.path(f"/etc/supd/units/{stopped}.toml").write_text('[exec]\ncommand = ["/bin/sleep", "100000"]\n')
    before = {}
    for unit in (name, stopped):
        status = wait_for(
            lambda unit=unit: (s := inside.unit_status(unit)) and s.get("state") == "running" and s,
            what=f"{unit} to run before the reboot",
        )
        before[unit] = int(status["pid"])
    inside.ok("supctl", "stop", stopped)
    wait_for(lambda: (inside.unit_status(stopped) or {}).get("state") == "inactive", what=f"{stopped} stopped")
    inside.box.reboot()
    inside.wait_active("supd to start at boot")
    for unit in (name, stopped):
        status = wait_for(
            lambda unit=unit: (s := inside.unit_status(unit)) and s.get("state") == "running" and s,
            what=f"{unit} to run after the reboot\n{inside.journal()}",
        )
        assert status["restarts"] == 0, status
        assert pid_alive_inside(inside, int(status["pid"]))


def test_purge_removes_the_venv_and_its_byte_code_and_keeps_the_data(inside: Inside) -> None:
    # last: the package leaves the sandbox. prerm stops supd and drops the
    # byte-code postinst wrote, postrm removes what is left under /opt/supd
    assert inside.path(SITE_PACKAGES).is_dir()
    purged = inside.run("dpkg", "--purge", "supd", timeout=300)
    assert purged.returncode == 0, f"dpkg --purge failed:\n{purged.stdout}\n{purged.stderr}"
    assert not inside.path("/opt/supd").exists()
    assert not inside.path("/lib/systemd/system/supd.service").exists()
    assert inside.show("ActiveState")["ActiveState"] == "inactive"
    assert not inside.path("/etc/systemd/system/multi-user.target.wants/supd.service").exists()
    assert inside.path("/var/lib/supd").is_dir()  # data, kept even on purge
