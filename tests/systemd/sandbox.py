"""A throwaway, real systemd booted as PID 1 of a systemd-nspawn sandbox.

The host of supd's CI runs another init and no systemd, yet the systemd
driver must be tested against the real thing (DESIGN: "never against a mock
alone"). So we boot the installed systemd inside `systemd-nspawn`:

* Its root is an overlay of the host `/` (lower, never written) with upper
  and work dirs on a private tmpfs: systemd never sees the host root, its
  writes vanish at unmount. nspawn refuses `-D /`, hence the overlay.
* nspawn gives it its own /tmp, /run, /dev and we add a tmpfs /var/tmp, so
  systemd-tmpfiles inside cannot wipe anything of the host.
* Its cgroups are a private subtree `<name>` in the cgroup2 hierarchy (and in
  `name=systemd` on hybrid hosts); with SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 the
  sandbox sees a pure cgroup2 tree, which systemd needs for FreezeUnit.
  No host systemd registers the machine, so nspawn gets `--register=no
  --keep-unit` and is pre-placed in that subtree by its launcher.
* Everything is named `supdtest<hex>` (machine, cgroups, state dir) so several
  sandboxes (parallel sessions) never collide.

D-Bus calls that carry PIDs (StartTransientUnit's `PIDs`) are read in the
sandbox's PID namespace, and systemd's private socket refuses peers it
cannot see. Driver code under test therefore runs through `pidns_command`:
sandbox PID + cgroup namespaces, host filesystem, private /proc and the
sandbox's cgroup2 mounted on /sys/fs/cgroup. The sandbox's systemd is then
`/proc/1`, and its sockets are under `/proc/1/root/run/...`.

On a systemd-booted host (the pure cgroup v2 VM: systemd 252 as PID 1,
cgroup2 on /sys/fs/cgroup with nsdelegate) the same sandbox boots beside the
host's systemd, and `HostSystemd` offers the host's own PID 1 with the same
interface, so the driver scenarios run against both.

Only PIDs this module started are ever signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

# Where the host is systemd-booted, the tests drive its own PID 1 instead.
from tests.layouts import pid1_name as host_pid1
from tests.layouts import systemd_booted as host_is_systemd_booted

log = structlog.get_logger()

CGROUP_MOUNT = Path("/sys/fs/cgroup")
CGROUP2_SUPER_MAGIC_NAME = "cgroup2fs"
CGROUP_PROCS = "cgroup.procs"
CGROUP_KILL = "cgroup.kill"
NSPAWN_RUN_DIR = Path("/run/systemd/nspawn")
NSPAWN_ROOT_RUN_DIR = Path("/run/systemd/nspawn-root")

# Inside the pidns helper the sandbox's systemd is PID 1.
INNER_PRIVATE_SOCKET = "/proc/1/root/run/systemd/private"
INNER_SYSTEM_BUS_SOCKET = "/proc/1/root/run/dbus/system_bus_socket"
# The harness leaf (inside the sandbox's cgroup tree) that pidns helpers join
# first: with nsdelegate the sandbox's systemd could not move their children
# into scopes otherwise.
HARNESS_CGROUP = "harness"

# Units of the host image that would slow the boot or fail (and leave the
# system "degraded"). Masked in the overlay's /etc only.
MASKED_UNITS = (
    "postgresql.service",
    "podman.service",
    "podman.socket",
    "podman-restart.service",
    "podman-auto-update.service",
    "podman-auto-update.timer",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "systemd-timesyncd.service",
    "console-getty.service",
    "getty@.service",
    "serial-getty@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "fstrim.timer",
    "dpkg-db-backup.timer",
    "logrotate.timer",
)

BOOT_TIMEOUT = 90.0
HALT_TIMEOUT = 30.0
# systemd-nspawn exits with this when the container asked for a reboot
NSPAWN_REBOOT_EXIT = 133


class SandboxError(Exception):
    """The sandbox could not be booted or torn down; says which step and why."""


def nspawn_binary() -> str | None:
    return shutil.which("systemd-nspawn")


def _fs_type(path: Path) -> str:
    out = subprocess.run(
        ["stat", "-fc", "%T", str(path)], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def cgroup_roots() -> tuple[Path, ...]:
    """The hierarchies nspawn uses: the cgroup2 one first, then name=systemd."""
    if _fs_type(CGROUP_MOUNT) == CGROUP2_SUPER_MAGIC_NAME:
        return (CGROUP_MOUNT,)
    roots = []
    if _fs_type(CGROUP_MOUNT / "unified") == CGROUP2_SUPER_MAGIC_NAME:
        roots.append(CGROUP_MOUNT / "unified")
    if (CGROUP_MOUNT / "systemd").is_dir():
        roots.append(CGROUP_MOUNT / "systemd")
    return tuple(roots)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(p) for p in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def _nspid(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (FileNotFoundError, ProcessLookupError):  # gone between listing and reading
        pass
    return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _is_mountpoint(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


@dataclass
class Sandbox:
    name: str
    state_dir: Path
    nspawn: subprocess.Popen[bytes]
    leader_pid: int = 0
    boot_seconds: float = 0.0
    cgroup_dirs: tuple[Path, ...] = field(default=())

    # -- addresses -------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.state_dir / "root"

    @property
    def system_bus_address(self) -> str:
        """The sandbox's system bus as seen from the host (dbus-daemon only checks uid)."""
        return f"unix:path=/proc/{self.leader_pid}/root/run/dbus/system_bus_socket"

    @property
    def private_address(self) -> str:
        """systemd's private socket as seen from the host; usable only from pidns helpers."""
        return f"unix:path=/proc/{self.leader_pid}/root/run/systemd/private"

    inner_private_address = f"unix:path={INNER_PRIVATE_SOCKET}"
    inner_system_bus_address = f"unix:path={INNER_SYSTEM_BUS_SOCKET}"

    @property
    def v2_dir(self) -> Path:
        return self.cgroup_dirs[0]

    @property
    def payload_dir(self) -> Path:
        """The host path of the sandbox's cgroup-namespace root ("/" inside)."""
        return self.v2_dir / "payload"

    # -- running things --------------------------------------------------
    def pidns_command(self, argv: Sequence[str]) -> list[str]:
        """argv wrapped to run in the sandbox's PID + cgroup namespaces with the
        host filesystem, a private /proc and the sandbox's cgroup2 on
        /sys/fs/cgroup (private mount namespace; the host's mounts are untouched)."""
        leaf = self.payload_dir / HARNESS_CGROUP
        inner = (
            # Where /sys/fs/cgroup is cgroup2 already (a pure v2 host), mounting
            # cgroup2 there again is refused ("already mounted": same superblock
            # on the same mount point); detach it first, in this private mount
            # namespace only. On a hybrid host it is a tmpfs: mount over it.
            '[ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] || umount -l /sys/fs/cgroup; '
            "mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup"
            ' && exec "$@"'
        )
        return [
            "sh", "-c",
            # join the sandbox's cgroup subtree from the host side first
            f'echo $$ > {leaf}/{CGROUP_PROCS} && exec "$@"',
            "sh",
            "nsenter", "-t", str(self.leader_pid), "-p", "-C", "--",
            "unshare", "-m", "--propagation", "private", "--mount-proc", "--",
            "sh", "-c", inner, "sh", *argv,
        ]  # fmt: skip

    def run_pidns(
        self, argv: Sequence[str], timeout: float = 100.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.pidns_command(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def run_python(
        self, module: str, *args: str, timeout: float = 100.0
    ) -> subprocess.CompletedProcess[str]:
        """`python3 -m module args...` in the sandbox's PID namespace, from the repo root."""
        repo = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
        return self.run_pidns(
            ["sh", "-c", f'cd {repo} && exec "$@"', "sh", sys.executable, "-m", module, *args],
            timeout=timeout,
            env=env,
        )

    def exec(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run argv fully inside the sandbox (all its namespaces, its root): systemctl etc."""
        return subprocess.run(
            ["nsenter", "-t", str(self.leader_pid), "-a", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    # -- lifecycle -------------------------------------------------------
    def reboot(self) -> None:
        """`systemctl reboot` inside, then boot the same root again: its files
        (the overlay's upper layer) are kept, every process and its /run are
        not, and PID 1 is a new process, as after a real reboot."""
        self.exec(["systemctl", "reboot"])  # its answer may be cut by the reboot itself
        try:
            code = self.nspawn.wait(timeout=HALT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"sandbox {self.name} did not reboot in time:\n{_nspawn_log(self)}") from None
        if code != NSPAWN_REBOOT_EXIT:
            raise SandboxError(f"systemd-nspawn exited {code}, not {NSPAWN_REBOOT_EXIT} (reboot):\n{_nspawn_log(self)}")
        nspawn = nspawn_binary()
        assert nspawn is not None
        self.nspawn = _launch(nspawn, self.name, self.state_dir, self.cgroup_dirs)
        _wait_for_boot(self)
        (self.payload_dir / HARNESS_CGROUP).mkdir(exist_ok=True)

    def down(self) -> list[str]:
        """Halt and remove everything; returns what could not be cleaned."""
        problems: list[str] = []
        if self.nspawn.poll() is None:
            # nspawn turns SIGTERM into SIGRTMIN+3 for the container: an orderly halt
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=HALT_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append("nspawn did not halt in time; killed")
                if self.leader_pid and _alive(self.leader_pid):
                    os.kill(self.leader_pid, signal.SIGKILL)  # ends the whole pid namespace
                self.nspawn.kill()
                self.nspawn.wait(timeout=10)
        # Stragglers in our subtree (pidns helpers whose nsenter parent lives on
        # the host side) - cgroup.kill only reaches processes of this subtree.
        if self.cgroup_dirs and self.v2_dir.is_dir() and _procs_below(self.v2_dir):
            problems.append(f"leftover processes in {self.v2_dir}: {_procs_below(self.v2_dir)}")
            (self.v2_dir / CGROUP_KILL).write_text("1")
            _wait_until(lambda: not _procs_below(self.v2_dir), 10.0)
        for mnt in (self.root, self.state_dir / "ovl"):
            if _is_mountpoint(mnt):
                res = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
                if res.returncode != 0:
                    problems.append(f"umount {mnt}: {res.stderr.strip()}")
        for top in self.cgroup_dirs:
            if top.is_dir():
                for dirpath, _dirs, _files in sorted(
                    os.walk(top, topdown=False), key=lambda w: -len(Path(w[0]).parts)
                ):
                    try:
                        os.rmdir(dirpath)
                    except OSError as e:
                        problems.append(f"rmdir {dirpath}: {e}")
        # nspawn leaves empty dirs on a disk-backed host /run; remove them only if empty
        for d in (
            NSPAWN_RUN_DIR / "propagate" / self.name,
            NSPAWN_RUN_DIR / "propagate",
            NSPAWN_RUN_DIR / "locks",
            NSPAWN_RUN_DIR,
            NSPAWN_ROOT_RUN_DIR,
        ):
            try:
                d.rmdir()
            except OSError:
                pass
        for top in self.cgroup_dirs:
            if top.exists():
                problems.append(f"cgroup left: {top}")
        if _is_mountpoint(self.root) or _is_mountpoint(self.state_dir / "ovl"):
            problems.append(f"mounts left under {self.state_dir}")
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        log.info("sandbox_down", name=self.name, problems=problems)
        return problems


def host_layout() -> str:
    """The host's cgroup layout, for skip reasons."""
    if _fs_type(CGROUP_MOUNT) == CGROUP2_SUPER_MAGIC_NAME:
        return "pure cgroup v2"
    if _fs_type(CGROUP_MOUNT / "unified") == CGROUP2_SUPER_MAGIC_NAME:
        return "hybrid (v1 controllers + cgroup2 at /sys/fs/cgroup/unified)"
    return "cgroup v1"


@dataclass
class HostSystemd:
    """The host's own systemd, PID 1 of a systemd-booted host (the pure cgroup
    v2 VM is one): the scenarios run as plain host processes, so PIDs,
    /proc/1/root/run/... and /sys/fs/cgroup need no namespace tricks. Same
    interface as Sandbox for the tests; nothing to boot or halt. Tests create
    only uniquely named units and remove them."""

    name: str = "host"

    inner_private_address = f"unix:path={INNER_PRIVATE_SOCKET}"
    inner_system_bus_address = f"unix:path={INNER_SYSTEM_BUS_SOCKET}"

    @property
    def payload_dir(self) -> Path:
        """The cgroup tree root as systemd sees it ("/" of its ControlGroup paths)."""
        return CGROUP_MOUNT

    def run_python(self, module: str, *args: str, timeout: float = 100.0) -> subprocess.CompletedProcess[str]:
        repo = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=repo, capture_output=True, text=True, timeout=timeout, check=False,
            env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def exec(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )


def _procs_below(top: Path) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, files in os.walk(top):
        if CGROUP_PROCS in files:
            try:
                pids.extend(int(p) for p in (Path(dirpath) / CGROUP_PROCS).read_text().split())
            except OSError:
                pass
    return pids


def _wait_until(cond, timeout: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


def _prepare_root(state_dir: Path, name: str) -> None:
    ovl, root = state_dir / "ovl", state_dir / "root"
    ovl.mkdir(parents=True)
    root.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1G,mode=755", f"{name}-ovl", str(ovl)], check=True
    )
    (ovl / "upper").mkdir()
    (ovl / "work").mkdir()
    subprocess.run(
        [
            "mount", "-t", "overlay", f"{name}-root", "-o",
            f"lowerdir=/,upperdir={ovl / 'upper'},workdir={ovl / 'work'}", str(root),
        ],
        check=True,
    )  # fmt: skip
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        link = unit_dir / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")  # don't share the host's id
    (root / "etc/hostname").write_text(name + "\n")


def boot(base_dir: Path, name: str | None = None) -> Sandbox:
    """Boot a sandbox under base_dir/<name>; raise SandboxError (after tearing
    down what was built) if it does not reach `running`."""
    if os.geteuid() != 0:
        raise SandboxError("booting a systemd sandbox needs root")
    nspawn = nspawn_binary()
    if nspawn is None:
        raise SandboxError("systemd-nspawn not found (Debian package systemd-container)")
    name = name or "supdtest" + uuid.uuid4().hex[:10]
    state_dir = base_dir / name
    roots = cgroup_roots()
    if not roots or _fs_type(roots[0]) != CGROUP2_SUPER_MAGIC_NAME:
        raise SandboxError(f"no cgroup2 hierarchy under {CGROUP_MOUNT}; expected unified or hybrid")
    t0 = time.monotonic()
    _prepare_root(state_dir, name)
    cgroup_dirs = tuple(r / name for r in roots)
    for d in cgroup_dirs:
        d.mkdir()
    proc = _launch(nspawn, name, state_dir, cgroup_dirs)
    sandbox = Sandbox(name=name, state_dir=state_dir, nspawn=proc, cgroup_dirs=cgroup_dirs)
    try:
        _wait_for_boot(sandbox)
    except BaseException:
        problems = sandbox.down()
        if problems:
            log.error("sandbox_teardown_incomplete", name=name, problems=problems)
        raise
    sandbox.boot_seconds = time.monotonic() - t0
    (sandbox.payload_dir / HARNESS_CGROUP).mkdir(exist_ok=True)
    log.info(
        "sandbox_up", name=name, leader=sandbox.leader_pid, boot_seconds=sandbox.boot_seconds
    )
    return sandbox


def _launch(nspawn: str, name: str, state_dir: Path, cgroup_dirs: tuple[Path, ...]) -> subprocess.Popen[bytes]:
    """systemd-nspawn booting state_dir/root, placed in our cgroups first."""
    launcher = "".join(f'echo $$ > {d}/{CGROUP_PROCS} && ' for d in cgroup_dirs) + 'exec "$@"'
    env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
    log_file = open(state_dir / "nspawn.log", "ab")  # noqa: SIM115 - lives as long as nspawn
    proc = subprocess.Popen(
        [
            "sh", "-c", launcher, "sh", nspawn,
            f"--directory={state_dir / 'root'}", f"--machine={name}",
            "--register=no", "--keep-unit", "--private-network",
            "--tmpfs=/var/tmp", "--console=pipe", "--boot",
        ],
        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        env=env, start_new_session=True,
    )  # fmt: skip
    log_file.close()
    return proc


def _nspawn_log(sandbox: Sandbox) -> str:
    try:
        return (sandbox.state_dir / "nspawn.log").read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def _wait_for_boot(sandbox: Sandbox) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT

    def leader() -> int | None:
        for child in _children(sandbox.nspawn.pid):
            ns = _nspid(child)
            if len(ns) >= 2 and ns[-1] == 1:
                return child
        return None

    while (found := leader()) is None:
        if sandbox.nspawn.poll() is not None:
            raise SandboxError(f"systemd-nspawn exited early:\n{_nspawn_log(sandbox)}")
        if time.monotonic() > deadline:
            raise SandboxError(f"no container PID 1 appeared:\n{_nspawn_log(sandbox)}")
        time.sleep(0.05)
    sandbox.leader_pid = found
    private = Path(f"/proc/{found}/root/run/systemd/private")
    if not _wait_until(private.exists, deadline - time.monotonic()):
        raise SandboxError(f"{private} never appeared:\n{_nspawn_log(sandbox)}")
    # Safety: the sandbox's /tmp must not be the host's (systemd-tmpfiles cleans it).
    if os.stat(f"/proc/{found}/root/tmp").st_dev == os.stat("/tmp").st_dev:
        raise SandboxError("sandbox /tmp is the host's /tmp; refusing to continue")
    res = sandbox.exec(
        ["systemctl", "is-system-running", "--wait"], timeout=max(1.0, deadline - time.monotonic())
    )
    state = res.stdout.strip()
    if state != "running":
        failed = sandbox.exec(["systemctl", "--failed", "--no-pager", "--plain"]).stdout
        raise SandboxError(
            f"sandbox {sandbox.name}: expected state running, got {state!r}; failed units:\n"
            f"{failed}\n{_nspawn_log(sandbox)}"
        )
