"""Device access rules for a unit's scope (pure: no I/O).

A container gets docker's default device allow-list: everything is denied
except the rules below. The kernel checks a device's type, major and minor
number at open(2) and mknod(2) time, wherever the node lives, so a node that
root makes (mknod) or an image ships is refused unless a rule allows it.

The list is docker's (moby's default OCI spec plus the rules runc appends,
`specconv.AllowedDevices`): mknod of any char or block device ("m" only:
making a node is harmless, using it is not), and read/write/mknod of null,
zero, full, random, urandom, tty, console, ptmx and the pseudo terminals
(/dev/pts/*, char major 136). runc also re-adds /dev/net/tun (10:200) for
backward compatibility; supd does not (the issue's list, and podman's):
`[rootfs].devices = ["/dev/net/tun"]` grants it.

One model, three enforcements (see docs/architecture.md):
- cgroup v1: `devices.deny` "a", then one `devices.allow` line per rule;
- cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program (cgroups/devicebpf.py);
- systemd: DevicePolicy=closed plus DeviceAllow= entries.
Plain units (no [rootfs]) carry no policy and keep full access.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

DeviceKind = Literal["c", "b", "a"]  # char, block, all (v1's letters)

ACCESS_ORDER = "rwm"
CHAR: DeviceKind = "c"
BLOCK: DeviceKind = "b"
ALL: DeviceKind = "a"

# cgroup v1 files
V1_DENY = "devices.deny"
V1_ALLOW = "devices.allow"
V1_LIST = "devices.list"

# systemd's DeviceAllow specifiers (systemd.resource-control(5))
SD_CHAR_PREFIX = "char-"
SD_BLOCK_PREFIX = "block-"
SD_CHAR_PATH = "/dev/char"
SD_BLOCK_PATH = "/dev/block"
SD_POLICY_CLOSED = "closed"


def canonical_access(access: str) -> str:
    """ "wr" -> "rw"; ValueError for anything but a non-empty subset of r, w, m."""
    if not access or any(c not in ACCESS_ORDER for c in access) or len(set(access)) != len(access):
        raise ValueError(f"expected a non-empty combination of r, w and m, got {access!r}")
    return "".join(c for c in ACCESS_ORDER if c in access)


@dataclass(frozen=True)
class DeviceRule:
    """One allow rule: `kind` c/b/a, `major`/`minor` None for "*", `access` ⊆ "rwm"."""

    kind: DeviceKind
    major: int | None
    minor: int | None
    access: str

    def __post_init__(self) -> None:
        if self.kind not in (CHAR, BLOCK, ALL):
            raise ValueError(f"device rule type: expected c, b or a, got {self.kind!r}")
        if canonical_access(self.access) != self.access:
            raise ValueError(f"device rule access: expected r, w, m in that order, got {self.access!r}")
        for name, value in (("major", self.major), ("minor", self.minor)):
            if value is not None and not 0 <= value < 2**32:
                raise ValueError(f"device rule {name}: expected 0..2^32-1 or None, got {value!r}")
        if self.kind == ALL and (self.major is not None or self.minor is not None):
            raise ValueError("device rule: type a takes no major or minor")

    def v1_line(self) -> str:
        """The devices.allow line: "c 1:3 rwm", "c 136:* rwm", "a *:* rwm"."""

        def num(n: int | None) -> str:
            return "*" if n is None else str(n)

        return f"{self.kind} {num(self.major)}:{num(self.minor)} {self.access}"

    def matches(self, kind: DeviceKind, major: int, minor: int, access: str) -> bool:
        """Whether this rule grants `access` (⊆ "rwm") on that device."""
        return (
            (self.kind == ALL or self.kind == kind)
            and (self.major is None or self.major == major)
            and (self.minor is None or self.minor == minor)
            and set(access) <= set(self.access)
        )

    def unconditional(self) -> bool:
        return self.kind == ALL and self.access == ACCESS_ORDER


def rule(kind: DeviceKind, major: int | None, minor: int | None, access: str = "rwm") -> DeviceRule:
    return DeviceRule(kind, major, minor, canonical_access(access))


# docker's default allow-list (see the module docstring), in runc's order.
DOCKER_DEFAULT: tuple[DeviceRule, ...] = (
    rule(CHAR, None, None, "m"),  # mknod of any char device
    rule(BLOCK, None, None, "m"),  # mknod of any block device
    rule(CHAR, 1, 3),  # /dev/null
    rule(CHAR, 1, 8),  # /dev/random
    rule(CHAR, 1, 7),  # /dev/full
    rule(CHAR, 5, 0),  # /dev/tty
    rule(CHAR, 1, 5),  # /dev/zero
    rule(CHAR, 1, 9),  # /dev/urandom
    rule(CHAR, 5, 1),  # /dev/console
    rule(CHAR, 136, None),  # /dev/pts/*
    rule(CHAR, 5, 2),  # /dev/ptmx
)


@dataclass(frozen=True)
class DevicePolicy:
    """Deny every device except what `allow` grants."""

    allow: tuple[DeviceRule, ...]

    def permits(self, kind: DeviceKind, major: int, minor: int, access: str) -> bool:
        """The reference semantics every enforcement must match (the BPF
        program's tests compare against it)."""
        return any(r.matches(kind, major, minor, access) for r in self.allow)


def container_policy(extra: Iterable[DeviceRule] = ()) -> DevicePolicy:
    """docker's defaults plus `extra` (from `[rootfs].devices`), duplicates dropped."""
    rules: list[DeviceRule] = []
    for r in (*DOCKER_DEFAULT, *extra):
        if r not in rules:
            rules.append(r)
    return DevicePolicy(tuple(rules))


def v1_writes(policy: DevicePolicy) -> list[tuple[str, str]]:
    """(file, line) writes for a v1 devices cgroup, in order: deny all first
    (this also clears what the cgroup inherited), then each allow."""
    return [(V1_DENY, "a"), *((V1_ALLOW, r.v1_line()) for r in policy.allow)]


def v1_list_lines(policy: DevicePolicy) -> list[str]:
    """What devices.list then shows (tests compare it)."""
    return [r.v1_line() for r in policy.allow]


def systemd_device_allow(policy: DevicePolicy) -> list[tuple[str, str]]:
    """DeviceAllow= entries (specifier, access) for systemd >= 240: "char-*"
    and "block-*" for wildcard majors, "char-MAJOR" for a wildcard minor,
    "/dev/char/MAJ:MIN" (parsed, not stat'ed, since v240) otherwise. A rule
    systemd cannot express (a fixed minor under a wildcard major, or type a
    with less than rwm) is a ValueError: supd makes no such rule."""
    entries: list[tuple[str, str]] = []
    for r in policy.allow:
        if r.kind == ALL:
            if not r.unconditional():
                raise ValueError(f"systemd DeviceAllow cannot express {r.v1_line()!r}")
            entries.extend(((SD_CHAR_PREFIX + "*", r.access), (SD_BLOCK_PREFIX + "*", r.access)))
            continue
        prefix = SD_CHAR_PREFIX if r.kind == CHAR else SD_BLOCK_PREFIX
        if r.major is None:
            if r.minor is not None:
                raise ValueError(f"systemd DeviceAllow cannot express {r.v1_line()!r}")
            entries.append((prefix + "*", r.access))
        elif r.minor is None:
            entries.append((f"{prefix}{r.major}", r.access))
        else:
            base = SD_CHAR_PATH if r.kind == CHAR else SD_BLOCK_PATH
            entries.append((f"{base}/{r.major}:{r.minor}", r.access))
    return entries
