"""Seccomp profiles: docker/OCI JSON (or the built-in default) -> `Profile`,
and a profile -> the rules that apply to one unit. Pure: no I/O.

What a docker profile means (moby profiles/seccomp): `defaultAction` for
whatever no rule names; each `syscalls[]` entry applies when its `includes`
all hold (every listed capability in the set, the native architecture
listed, the kernel at least `minKernel`) and none of its `excludes` does
(any listed capability in the set, the architecture listed, the kernel at
least `minKernel`). Conditions on the same argument are alternatives (one
rule each, as runc does); conditions on different arguments all must hold.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.seccomp import default_profile

ACTIONS = ("allow", "errno", "kill", "kill_process", "kill_thread", "trap", "log", "trace")
OPS = ("ne", "lt", "le", "eq", "ge", "gt", "masked_eq")
EPERM = 1
MAX_ERRNO = 4095
MAX_NAME = 64
# the architecture names docker's `includes.arches` use (Go's GOARCH)
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
           "loongarch64": "loong64", "mips64": "mips64"}  # fmt: skip
# platform.machine() -> libseccomp's architecture name
SECCOMP_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "armv7l": "arm", "i686": "x86",
                "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
                "loongarch64": "loongarch64", "mips64": "mips64"}  # fmt: skip


class ProfileError(ValueError):
    """A profile that can't be used; `syscall` names the offending syscall."""

    def __init__(self, message: str, syscall: str | None = None) -> None:
        super().__init__(message)
        self.syscall = syscall


@dataclass(frozen=True)
class Arg:
    index: int  # 0..5
    op: str  # one of OPS
    value: int  # for masked_eq: the mask
    value_two: int = 0  # for masked_eq: what the masked argument must equal


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None = None  # errno / trace message; None: EPERM
    args: tuple[Arg, ...] = ()
    include_caps: tuple[str, ...] = ()  # capability names without CAP_
    exclude_caps: tuple[str, ...] = ()
    include_arches: tuple[str, ...] = ()  # docker's (Go) names: amd64, arm64, ...
    exclude_arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None
    exclude_min_kernel: tuple[int, int] | None = None

    def applies(self, caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
        if any(c not in caps for c in self.include_caps):
            return False
        if self.include_arches and arch not in self.include_arches:
            return False
        if self.min_kernel is not None and kernel < self.min_kernel:
            return False
        if any(c in caps for c in self.exclude_caps):
            return False
        if arch in self.exclude_arches:
            return False
        return not (self.exclude_min_kernel is not None and kernel >= self.exclude_min_kernel)

    def arg_sets(self) -> list[tuple[Arg, ...]]:
        """The libseccomp rules this entry is: one per alternative."""
        indexes = [a.index for a in self.args]
        if len(set(indexes)) == len(indexes):
            return [self.args]
        return [(a,) for a in self.args]


@dataclass(frozen=True)
class Profile:
    default_action: str
    default_errno: int | None = None
    architectures: tuple[str, ...] = ()  # libseccomp names; () : from arch_map
    arch_map: tuple[tuple[str, tuple[str, ...]], ...] = ()
    rules: tuple[Rule, ...] = field(default=())

    def names(self) -> frozenset[str]:
        return frozenset(n for r in self.rules for n in r.names)

    def arches_for(self, native: str) -> tuple[str, ...]:
        """native first, then the ones the profile lists for it (docker: archMap
        entries whose main architecture is the native one)."""
        arches = [native]
        for main, subs in self.arch_map:
            if main == native:
                arches += [a for a in subs if a not in arches]
        if self.architectures and native in self.architectures:
            arches += [a for a in self.architectures if a not in arches]
        return tuple(arches)


def host_facts() -> tuple[str, str, tuple[int, int]]:
    """(libseccomp arch name, docker arch name, (major, minor) of the kernel)."""
    machine = platform.machine()
    release = platform.release().split("-")[0].split(".")
    kernel = (int(release[0]), int(release[1]) if len(release) > 1 and release[1].isdigit() else 0)
    return SECCOMP_ARCH.get(machine, machine), GO_ARCH.get(machine, machine), kernel


# --- docker/OCI JSON ----------------------------------------------------------

def parse_json(text: str | bytes) -> Profile:
    """A docker (or OCI runtime-spec `linux.seccomp`) profile; ProfileError says
    what is wrong and where."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProfileError(f"not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ProfileError("expected a JSON object with defaultAction and syscalls")
    default_action = _action(data.get("defaultAction"), "defaultAction")
    default_errno = _errno(data.get("defaultErrnoRet"), "defaultErrnoRet")
    architectures = tuple(_arch(a, "architectures") for a in _list(data.get("architectures"), "architectures"))
    arch_map = []
    for i, entry in enumerate(_list(data.get("archMap"), "archMap")):
        where = f"archMap[{i}]"
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{where}: expected an object")
        subs = tuple(_arch(a, where) for a in _list(entry.get("subArchitectures"), where + ".subArchitectures"))
        arch_map.append((_arch(entry.get("architecture"), where + ".architecture"), subs))
    rules = tuple(_rule(entry, f"syscalls[{i}]") for i, entry in enumerate(_list(data.get("syscalls"), "syscalls")))
    return Profile(default_action, default_errno, architectures, tuple(arch_map), rules)


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProfileError(f"{where}: expected a list, got {json.dumps(value)[:60]}")
    return value


def _action(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("SCMP_ACT_"):
        raise ProfileError(f"{where}: expected an action like SCMP_ACT_ERRNO, got {json.dumps(value)[:60]}")
    action = value.removeprefix("SCMP_ACT_").lower()
    if action not in ACTIONS:
        raise ProfileError(f"{where}: unsupported action {value} (supd knows "
                           + ", ".join("SCMP_ACT_" + a.upper() for a in ACTIONS) + ")")
    return action


def _errno(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ERRNO:
        raise ProfileError(f"{where}: expected an errno number in 0..{MAX_ERRNO}, got {json.dumps(value)[:60]}")
    return value


def _arch(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("SCMP_ARCH_"):
        raise ProfileError(f"{where}: expected an architecture like SCMP_ARCH_X86_64, got {json.dumps(value)[:60]}")
    return value.removeprefix("SCMP_ARCH_").lower()


def _kernel(value: object, where: str) -> tuple[int, int]:
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 4 for p in parts):
        raise ProfileError(f'{where}: expected a kernel version like "4.8", got {json.dumps(value)[:60]}')
    return int(parts[0]), int(parts[1])


def _strings(value: object, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not all(isinstance(v, str) for v in items):
        raise ProfileError(f"{where}: expected a list of strings")
    return tuple(items)


def _caps(value: object, where: str) -> tuple[str, ...]:
    return tuple(c.upper().removeprefix("CAP_") for c in _strings(value, where))


def _conditions(value: object, where: str, allowed: Iterable[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where}: expected an object")
    for key in value:
        if key not in allowed:
            raise ProfileError(f"{where}.{key}: unknown condition (expected {', '.join(allowed)})")
    return value


def _rule(entry: object, where: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise ProfileError(f"{where}: expected an object with names and action")
    names = list(_strings(entry.get("names"), where + ".names"))
    if isinstance(entry.get("name"), str):  # the old single-name form
        names.append(entry["name"])
    if not names:
        raise ProfileError(f"{where}: expected names")
    for name in names:
        if not name or len(name) > MAX_NAME or not all(c.isalnum() or c == "_" for c in name):
            raise ProfileError(f"{where}.names: {json.dumps(name)[:60]} is no syscall name", syscall=name)
    args = []
    for i, raw in enumerate(_list(entry.get("args"), where + ".args")):
        at = f"{where}.args[{i}]"
        if not isinstance(raw, Mapping):
            raise ProfileError(f"{at}: expected an object with index, value and op")
        index, value, two = raw.get("index"), raw.get("value"), raw.get("valueTwo", 0)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
            raise ProfileError(f"{at}.index: expected 0..5")
        for what, number in (("value", value), ("valueTwo", two)):
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**64:
                raise ProfileError(f"{at}.{what}: expected an unsigned 64-bit number")
        op = raw.get("op")
        if not isinstance(op, str) or op.removeprefix("SCMP_CMP_").lower() not in OPS:
            raise ProfileError(f"{at}.op: expected SCMP_CMP_EQ, _NE, _LT, _LE, _GT, _GE or _MASKED_EQ")
        args.append(Arg(index, op.removeprefix("SCMP_CMP_").lower(), value, two))
    includes = _conditions(entry.get("includes"), where + ".includes", ("caps", "arches", "minKernel"))
    excludes = _conditions(entry.get("excludes"), where + ".excludes", ("caps", "arches", "minKernel"))
    return Rule(
        names=tuple(names),
        action=_action(entry.get("action"), where + ".action"),
        errno=_errno(entry.get("errnoRet"), where + ".errnoRet"),
        args=tuple(args),
        include_caps=_caps(includes.get("caps"), where + ".includes.caps"),
        exclude_caps=_caps(excludes.get("caps"), where + ".excludes.caps"),
        include_arches=_strings(includes.get("arches"), where + ".includes.arches"),
        exclude_arches=_strings(excludes.get("arches"), where + ".excludes.arches"),
        min_kernel=_kernel(includes["minKernel"], where + ".includes.minKernel") if includes.get("minKernel") else None,
        exclude_min_kernel=(
            _kernel(excludes["minKernel"], where + ".excludes.minKernel") if excludes.get("minKernel") else None
        ),
    )


def rules_for(profile: Profile, caps: Iterable[str], arch: str, kernel: tuple[int, int]) -> list[Rule]:
    """The entries that apply to a process with capability names `caps`."""
    have = frozenset(caps)
    return [r for r in profile.rules if r.applies(have, arch, kernel)]


# --- the built-in profile -------------------------------------------------------

def _builtin() -> Profile:
    rules = []
    for names, action, errno, args, cond in default_profile.RULES:
        rules.append(Rule(
            names=tuple(names), action=action, errno=errno,
            args=tuple(Arg(*a) for a in args),
            include_caps=tuple(cond.get("include_caps", ())),
            exclude_caps=tuple(cond.get("exclude_caps", ())),
            include_arches=tuple(cond.get("include_arches", ())),
            exclude_arches=tuple(cond.get("exclude_arches", ())),
            min_kernel=_kernel(cond["min_kernel"], "min_kernel") if "min_kernel" in cond else None,
        ))  # fmt: skip
    return Profile(
        default_action=default_profile.DEFAULT_ACTION,
        default_errno=default_profile.DEFAULT_ERRNO,
        arch_map=tuple(default_profile.ARCH_MAP.items()),
        rules=tuple(rules),
    )


DEFAULT: Profile = _builtin()
# every syscall name docker's profile knows: a user profile may name one this
# host's libseccomp is too old for (it is then left out, as docker does)
KNOWN_NAMES: frozenset[str] = DEFAULT.names()
