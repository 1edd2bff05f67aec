"""One throwaway qemu guest booted from the pure v2 image, driven over SSH.

Every boot gets a fresh qcow2 overlay over the read-only image, so nothing a
run writes survives into the next. The only listening socket is SSH forwarded
from 127.0.0.1; the guest's own traffic goes through qemu's user-mode network.
The run folder records our qemu's pid, and only that pid is ever signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from image import Image, log

CPUS = int(os.environ.get("SUPD_VM_CPUS", "2"))
MEMORY_MIB = int(os.environ.get("SUPD_VM_MEMORY", "3072"))
BOOT_TIMEOUT = 600.0  # TCG boots in ~30 s on an idle host; a busy one is slower
POWEROFF_TIMEOUT = 60.0
SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
    # a test may keep the guest's CPUs busy for minutes; don't drop the session over it
    "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=12",
)


def accelerator() -> list[str]:
    """KVM where it can run a stock kernel, else TCG. A kvm_pvm host has a
    /dev/kvm that only runs PVM-aware guests, so it counts as no KVM."""
    choice = os.environ.get("SUPD_VM_ACCEL", "auto")
    if choice == "auto":
        usable = os.access("/dev/kvm", os.R_OK | os.W_OK) and not Path("/sys/module/kvm_pvm").exists()
        choice = "kvm" if usable else "tcg"
    if choice == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if choice == "tcg":
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]
    raise SystemExit(f"purev2: SUPD_VM_ACCEL must be auto, kvm or tcg, not {choice!r}")


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Machine:
    run_dir: Path

    # ---- what the run folder records
    @property
    def overlay(self) -> Path:
        return self.run_dir / "overlay.qcow2"

    @property
    def console(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def qmp(self) -> Path:
        return self.run_dir / "qmp.sock"

    def _read(self, name: str) -> str | None:
        try:
            return (self.run_dir / name).read_text().strip()
        except FileNotFoundError:
            return None

    def pid(self) -> int | None:
        """Our qemu's pid while it runs; None once it is gone (a stale pid file
        naming some other process does not count)."""
        text = self._read("qemu.pid")
        if not text:
            return None
        try:
            comm = Path(f"/proc/{int(text)}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return None
        return int(text) if comm.startswith("qemu-system") else None

    def port(self) -> int:
        return int(self._read("port") or 0)

    def ssh_key(self) -> Path:
        return Path(self._read("ssh_key") or "/nonexistent")

    # ---- lifecycle
    def up(self, image: Image) -> None:
        if self.pid() is not None:
            raise SystemExit(f"purev2: a VM is already up (pid {self.pid()}); `purev2.py down` first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.overlay, self.console, self.qmp, self.run_dir / "qemu.pid"):
            stale.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk),
                        str(self.overlay)], check=True)
        port = free_local_port()
        (self.run_dir / "port").write_text(f"{port}\n")
        # a copy of the key: a newer image build may delete this image's folder while we run
        key = self.run_dir / "id_ed25519"
        key.unlink(missing_ok=True)
        shutil.copy(image.ssh_key, key)
        key.chmod(0o600)
        (self.run_dir / "ssh_key").write_text(f"{key}\n")
        accel = accelerator()
        log(f"booting ({accel[1]}, {CPUS} vCPUs, {MEMORY_MIB} MiB, ssh on 127.0.0.1:{port})")
        started = time.monotonic()
        subprocess.run([
            "qemu-system-x86_64", "-name", "supd-purev2", "-machine", "pc", *accel,
            "-smp", str(CPUS), "-m", str(MEMORY_MIB),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            # the point of the VM: systemd mounts only cgroup2 at /sys/fs/cgroup
            "-append", "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1",
            "-drive", f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
            "-serial", f"file:{self.console}",
            "-qmp", f"unix:{self.qmp},server=on,wait=off",
            "-pidfile", str(self.run_dir / "qemu.pid"), "-daemonize",
        ], check=True)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.ssh(["true"], capture=True, check=False).returncode != 0:
            if self.pid() is None or time.monotonic() > deadline:
                tail = self.console.read_text(errors="replace").splitlines()[-30:] if self.console.exists() else []
                print("\n".join(tail))
                self.down()
                raise SystemExit(f"purev2: the guest did not come up (console: {self.console})")
            time.sleep(2)
        state = self.ssh(["systemctl", "is-system-running", "--wait"], capture=True, check=False).stdout.strip()
        log(f"up in {time.monotonic() - started:.0f} s, systemd {state}")
        if state != "running":
            self.ssh(["systemctl", "--failed", "--no-legend"], check=False)

    def ssh(self, argv: list[str], *, stdin: int | None = subprocess.DEVNULL, capture: bool = False,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command line in the guest as root. `argv` is joined into one
        shell line by ssh, as ssh always does: quote what needs quoting."""
        return subprocess.run(self.ssh_argv() + argv, stdin=stdin, capture_output=capture, text=True, check=check)

    def ssh_argv(self) -> list[str]:
        return ["ssh", *SSH_OPTIONS, "-i", str(self.ssh_key()), "-p", str(self.port()), "root@127.0.0.1"]

    def down(self) -> None:
        pid = self.pid()
        if pid is not None:
            log("powering off")
            self.ssh(["systemctl", "poweroff"], capture=True, check=False)
            if not self._wait_gone(pid, POWEROFF_TIMEOUT):
                log("no clean power-off: asking qemu to quit")
                self._qmp_quit()
                if not self._wait_gone(pid, 5):
                    os.kill(pid, signal.SIGKILL)
                    self._wait_gone(pid, 5)
        for leftover in (self.overlay, self.qmp, self.run_dir / "qemu.pid"):
            leftover.unlink(missing_ok=True)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() != pid:
                return True
            time.sleep(0.5)
        return self.pid() != pid

    def _qmp_quit(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(self.qmp))
                s.recv(4096)  # the greeting
                s.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n')
                s.recv(4096)
        except OSError:
            pass
