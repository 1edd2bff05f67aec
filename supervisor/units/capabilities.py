"""Linux capability names and a unit's capability set. Pure: no I/O.

A container starts from podman's default set (containers/common#1240, 2022):
docker's minus AUDIT_WRITE, MKNOD and NET_RAW. `[exec].cap_add` and
`[exec].cap_drop` change it the way `docker run --cap-add/--cap-drop` do:
"ALL" in cap_drop starts from nothing, "ALL" in cap_add gives every
capability. A plain (host) unit keeps whatever root has unless it sets one of
the keys; then its set starts from every capability.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# capability(7) numbers, as <linux/capability.h> defines them
CAPABILITIES: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
    "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
    "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17,
    "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21,
    "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29,
    "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33,
    "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
    "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}  # fmt: skip
NAMES: dict[int, str] = {number: name for name, number in CAPABILITIES.items()}
ALL_CAPS: frozenset[int] = frozenset(CAPABILITIES.values())

# podman's default (containers/common pkg/config/default.go since v0.49)
PODMAN_DEFAULT: tuple[str, ...] = (
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
)  # fmt: skip
# docker's default (moby oci/caps/defaults.go), for the documentation and tests
DOCKER_DEFAULT: tuple[str, ...] = PODMAN_DEFAULT + ("AUDIT_WRITE", "MKNOD", "NET_RAW")
CONTAINER_DEFAULT: frozenset[int] = frozenset(CAPABILITIES[name] for name in PODMAN_DEFAULT)

ALL = "ALL"
NAME_EXPECTED = 'capability names like "NET_RAW" or "CAP_NET_RAW", or "ALL"'


def canonical_name(raw: str) -> str:
    """"cap_net_raw", "NET_RAW" -> "NET_RAW"; "all" -> "ALL". ValueError(the
    name) when it is no capability."""
    name = raw.strip().upper()
    if name == ALL:
        return ALL
    name = name.removeprefix("CAP_")
    if name not in CAPABILITIES:
        raise ValueError(raw)
    return name


def parse_names(values: object) -> tuple[str, ...]:
    """A cap_add/cap_drop list -> canonical names, in order, without repeats.
    ValueError(expected) for a value that is no list of strings; ValueError
    naming the capability (UnknownCapability) for an unknown name."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"a list of {NAME_EXPECTED}")
    names: list[str] = []
    for index, value in enumerate(values):
        try:
            name = canonical_name(value)
        except ValueError:
            raise UnknownCapability(index, value) from None
        if name not in names:
            names.append(name)
    return tuple(names)


class UnknownCapability(ValueError):
    def __init__(self, index: int, name: str) -> None:
        super().__init__(f"a capability name, got unknown capability {name!r}")
        self.index = index
        self.name = name


def resolve(base: Iterable[int], add: Sequence[str], drop: Sequence[str]) -> frozenset[int]:
    """docker's order: ALL in drop empties the base, then adds, then drops."""
    caps = set() if ALL in drop else set(base)
    if ALL in add:
        caps |= ALL_CAPS
    caps |= {CAPABILITIES[n] for n in add if n != ALL}
    caps -= {CAPABILITIES[n] for n in drop if n != ALL}
    return frozenset(caps)


def conflict(add: Sequence[str], drop: Sequence[str]) -> str | None:
    """A name both added and dropped (meaningless, as docker says), or None."""
    both = [n for n in add if n in drop and n != ALL]
    return both[0] if both else None


def unit_caps(container: bool, add: Sequence[str], drop: Sequence[str]) -> frozenset[int] | None:
    """The set a unit's processes keep: None means "leave them alone" (a
    plain unit that sets neither key)."""
    if container:
        return resolve(CONTAINER_DEFAULT, add, drop)
    if not add and not drop:
        return None
    return resolve(ALL_CAPS, add, drop)


def names_of(caps: Iterable[int]) -> tuple[str, ...]:
    return tuple("CAP_" + NAMES[c] for c in sorted(caps))
