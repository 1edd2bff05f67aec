"""The pure cgroup v2 guest image: Debian 12 (minbase) with systemd as PID 1,
Debian's cloud kernel and initramfs, Python 3.11 and every Debian package the
root test tiers and the benchmarks call.

An image is a read-only ext4 file plus the kernel, the initramfs and the SSH
key root logs in with, in `<cache>/images/<key>/`. The key is a hash of what
the image is made from (the package lists, the suite, this file and the
customize hook), so editing any of them builds a new image and an unchanged
recipe reuses the cached one.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"  # Debian 12: its python3 is 3.11, which the wheelhouse targets
GUEST_PYTHON = "3.11"
DISK_SIZE = "6G"  # sparse; about 0.5 GB is used

# What boots the guest and lets us in.
BOOT_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "udev", "kmod", "mount", "util-linux", "procps",
    "iproute2", "netbase", "ca-certificates", "openssh-server", "e2fsprogs",
    "linux-image-cloud-amd64", "initramfs-tools",
)
# What the project's tests and benchmarks run, as the Makefile's RUN_PACKAGES and TEST_PACKAGES
# installs them on a host. Left out on purpose: podman and conmon (no test needs
# them; the v2 bench compares with crun) and dpkg-dev (build-deb.sh only calls
# dpkg-deb, which is in the essential dpkg). gcc and libc6-dev build the
# static probes the container-boundary tests run inside containers.
# containernetworking-plugins and iptables: the CNI plugins supd runs for
# container networks (bridge, host-local, portmap, firewall, loopback).
PROJECT_PACKAGES = (
    "python3", "python3-venv", "busybox-static", "tini", "crun", "runc", "umoci",
    "skopeo", "stress-ng", "systemd-container", "curl", "gcc", "libc6-dev", "libseccomp2",
    "containernetworking-plugins", "iptables",
)
PACKAGES = BOOT_PACKAGES + PROJECT_PACKAGES

HERE = Path(__file__).resolve().parent
CUSTOMIZE_HOOK = HERE / "customize.sh"


@dataclass(frozen=True)
class Image:
    folder: Path

    @property
    def disk(self) -> Path:
        return self.folder / "base.img"

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    @property
    def ssh_key(self) -> Path:
        return self.folder / "id_ed25519"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd, self.ssh_key))


def recipe_key() -> str:
    """A hash of every input of the image: the suite, the packages, the build
    steps (`_build_into`'s own source) and the customize hook. Not of the
    mirror's current state: `build --rebuild` picks up Debian's updates."""
    h = hashlib.sha256()
    h.update(f"{SUITE}\n{DISK_SIZE}\n{' '.join(sorted(PACKAGES))}\n".encode())
    h.update(inspect.getsource(_build_into).encode())
    h.update(CUSTOMIZE_HOOK.read_bytes())
    return h.hexdigest()[:16]


def image_for(cache: Path) -> Image:
    return Image(cache / "images" / recipe_key())


def debian_mirrors() -> tuple[str, str]:
    """The host's own Debian mirror and security mirror (from its apt sources),
    so the build talks to nothing the host does not already use."""
    uris: list[str] = []
    sources_d = Path("/etc/apt/sources.list.d")
    for f in sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []:
        for line in f.read_text().splitlines():
            if line.startswith("URIs:"):
                uris += line.split(":", 1)[1].split()
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("[")]
            if words[:1] == ["deb"] and len(words) > 1:
                uris.append(words[1])
    main = next((u for u in uris if "security" not in u), "http://deb.debian.org/debian")
    security = next((u for u in uris if "security" in u), "http://deb.debian.org/debian-security")
    return os.environ.get("SUPD_VM_MIRROR", main), os.environ.get("SUPD_VM_SECURITY_MIRROR", security)


def log(msg: str) -> None:
    """Progress goes to stderr: stdout is the guest command's own output."""
    print(f"[purev2 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(cache: Path, *, rebuild: bool = False) -> Image:
    """Build the image unless an identical one is cached. Serialised by a lock
    so two callers never build into the same folder."""
    image = image_for(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.complete() and not rebuild:
            return image
        _build_into(image)
        _drop_other_images(image)
    return image


def _build_into(image: Image) -> None:
    for tool in ("mmdebstrap", "mkfs.ext4", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SystemExit(f"purev2: {tool} is missing (make test installs mmdebstrap, qemu-utils, e2fsprogs)")
    work = image.folder.with_name(image.folder.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    staged = Image(work)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "supd-purev2", "-f", str(staged.ssh_key)],
                   check=True)
    rootfs = work / "rootfs"
    mirror, security = debian_mirrors()
    started = time.monotonic()
    log(f"mmdebstrap {SUITE} ({len(PACKAGES)} packages asked for) from {mirror}")
    subprocess.run([
        "mmdebstrap", "--quiet", "--mode=root", "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        '--aptopt=Acquire::Languages "none"',
        # no documentation in a test image; copyright files stay
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        f'--customize-hook=sh {CUSTOMIZE_HOOK} "$1" {staged.ssh_key}.pub',
        SUITE, str(rootfs),
        f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ], check=True)
    log(f"root filesystem in {time.monotonic() - started:.0f} s")
    # The cloud kernel loads virtio_blk as a module, hence the initramfs next to it.
    shutil.copy(_only(rootfs / "boot", "vmlinuz-*"), staged.kernel)
    shutil.copy(_only(rootfs / "boot", "initrd.img-*"), staged.initrd)
    listing = subprocess.run(["chroot", str(rootfs), "dpkg-query", "-W"], check=True, capture_output=True, text=True)
    (work / "packages.txt").write_text(listing.stdout)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "supd-purev2", "-d", str(rootfs), str(staged.disk), DISK_SIZE],
                   check=True)
    shutil.rmtree(rootfs)
    staged.disk.chmod(0o444)  # every boot writes to its own overlay, never here
    shutil.rmtree(image.folder, ignore_errors=True)
    work.rename(image.folder)
    log(f"image {image.folder} built in {time.monotonic() - started:.0f} s")


def _only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"purev2: expected one {folder}/{pattern}, found {[p.name for p in found]}")
    return found[0]


def _drop_other_images(keep: Image) -> None:
    """An image whose recipe changed is never used again: free its ~0.5 GB."""
    for other in keep.folder.parent.iterdir():
        if other != keep.folder and not other.name.endswith(".building"):
            shutil.rmtree(other, ignore_errors=True)
