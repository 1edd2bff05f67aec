#!/bin/sh
# mmdebstrap customize hook for the pure cgroup v2 test VM (see image.py).
# $1: the finished root folder on the host; $2: the SSH public key root logs in with.
# Runs on the host as root with the guest's tree at $1: every path below is
# prefixed with it, and guest tools run through chroot.
set -eu
R=$1
PUBKEY=$2

echo supd-purev2 >"$R/etc/hostname"
cat >"$R/etc/hosts" <<HOSTS
127.0.0.1 localhost
127.0.1.1 supd-purev2
::1 localhost ip6-localhost ip6-loopback
HOSTS
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$R/etc/fstab"

# A machine-id of its own: left "uninitialized", every boot of a fresh overlay
# would run systemd's first-boot steps, which cost seconds under TCG.
tr -d - </proc/sys/kernel/random/uuid >"$R/etc/machine-id"

# qemu's user-mode network hands out an address by DHCP and forwards DNS at 10.0.2.3.
mkdir -p "$R/etc/systemd/network"
cat >"$R/etc/systemd/network/20-qemu-user.network" <<NET
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
rm -f "$R/etc/resolv.conf"
echo 'nameserver 10.0.2.3' >"$R/etc/resolv.conf"
chroot "$R" systemctl enable systemd-networkd.service >/dev/null 2>&1

# Nothing should compete with the tests for two emulated CPUs, or hold the boot up.
chroot "$R" systemctl mask systemd-networkd-wait-online.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer systemd-tmpfiles-clean.timer getty@tty1.service >/dev/null 2>&1

# root: key login over SSH only; no password, so the serial console (a log file) needs none.
install -d -m 700 "$R/root/.ssh"
install -m 600 "$PUBKEY" "$R/root/.ssh/authorized_keys"
chroot "$R" passwd -d root >/dev/null
cat >"$R/etc/ssh/sshd_config.d/supd-purev2.conf" <<SSHD
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
SSHD

# The guest cannot verify the package index's certificate on every network
# (TLS interception on the host side): pip in the guest only ever installs from
# the wheelhouse the host ships to /root/wheelhouse. build-deb.sh's pip too.
cat >"$R/etc/pip.conf" <<PIP
[global]
no-index = true
find-links = /root/wheelhouse
disable-pip-version-check = true
PIP

# apt's indexes are dead weight in an image that never installs anything.
rm -rf "$R"/var/lib/apt/lists/*_Packages "$R"/var/cache/apt/*.bin
