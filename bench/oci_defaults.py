"""What podman adds to `crun spec`'s config.json, so crun does the same work as
a default supd container: a default seccomp filter, the device allow-list and
podman's default capability set.

`crun spec` (1.8) already has masked and read-only paths, `noNewPrivileges`
and a deny-all device rule (crun itself then allows docker's default devices),
but no seccomp section at all. podman fills one from a docker-format profile
by keeping the rules that apply to the host's architecture and the
container's capabilities, and hands crun the result; so does this module.

Which profile (`default_seccomp`), first found:
1. supd's own built-in default (docker's profile, `supervisor.seccomp`), so
   crun gets exactly the rules a default supd container gets;
2. containers-common's `/usr/share/containers/seccomp.json`, what podman on
   this host uses (docker's profile, looser on clone/unshare/keyctl).
A `--seccomp-profile PATH` given to start_latency.py wins over both.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

PROFILE = Path("/usr/share/containers/seccomp.json")  # Debian package golang-github-containers-common

# podman's default set since containers/common#1240 (2022), supd's default too.
CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
)  # fmt: skip

# docker's default allow-list, after a deny-all: null, zero, full, random,
# urandom, tty, console, ptmx, pts/*, and mknod (only) of any char or block device.
DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"},
    *({"allow": True, "type": "c", "major": 1, "minor": m, "access": "rwm"} for m in (3, 5, 7, 8, 9)),
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},
)
# a device rule's wildcard is an absent major/minor in OCI; -1 above is only shorthand
_WILDCARD = -1

# platform.machine() → (Go arch name used in profiles' "arches", libseccomp arch)
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
}


def _kernel_at_least(wanted: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in v.split(".")[:2])

    return parts(os.uname().release) >= parts(wanted)


def _applies(rule: dict[str, Any], goarch: str, caps: set[str]) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
        return False
    if exc.get("arches") and goarch in exc["arches"]:
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    return True


def oci_seccomp(profile: dict[str, Any], caps: set[str], machine: str | None = None) -> dict[str, Any]:
    """An OCI `linux.seccomp` section from a docker/containers-common profile,
    for this machine's architecture and the container's capabilities."""
    goarch, native = _ARCHES[machine or platform.machine()]
    arches = [native]
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            arches += entry.get("subArchitectures") or []
    section: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": []}
    if "defaultErrnoRet" in profile:
        section["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for rule in profile["syscalls"]:
        if not _applies(rule, goarch, caps):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        out: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("args"):
            out["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a} for a in rule["args"]]
        if "errnoRet" in rule:
            out["errnoRet"] = rule["errnoRet"]
        section["syscalls"].append(out)
    return section


def supd_builtin_seccomp(caps: set[str]) -> dict[str, Any] | None:
    """An OCI section from supd's built-in default profile, or None where this
    checkout of supd has none. Same-index argument alternatives become one
    rule each, as supd's compiler and runc do."""
    try:
        from supervisor.seccomp import profile as sp
    except ImportError:
        return None
    native, goarch, kernel = sp.host_facts()
    prof = sp.DEFAULT
    section: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_" + prof.default_action.upper(),
        "architectures": ["SCMP_ARCH_" + a.upper() for a in prof.arches_for(native)],
        "syscalls": [],
    }
    if prof.default_errno is not None:
        section["defaultErrnoRet"] = prof.default_errno
    for rule in sp.rules_for(prof, {c.removeprefix("CAP_") for c in caps}, goarch, kernel):
        for args in rule.arg_sets():
            entry: dict[str, Any] = {"names": list(rule.names), "action": "SCMP_ACT_" + rule.action.upper()}
            if args:
                entry["args"] = [
                    {"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": "SCMP_CMP_" + a.op.upper()}
                    for a in args
                ]
            if rule.action == "errno":
                entry["errnoRet"] = rule.errno if rule.errno is not None else sp.EPERM
            section["syscalls"].append(entry)
    return section


def default_seccomp(profile_path: Path | None = None) -> tuple[dict[str, Any], str]:
    """(OCI seccomp section for CAPS, where its rules come from)."""
    caps = set(CAPS)
    if profile_path is None:
        section = supd_builtin_seccomp(caps)
        if section is not None:
            return section, "supd's built-in default (docker's profile)"
        profile_path = PROFILE
    return oci_seccomp(json.loads(profile_path.read_text()), caps), str(profile_path)


def device_rules() -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if v != _WILDCARD} for r in DEVICE_RULES]


def harden(config: dict[str, Any], seccomp: dict[str, Any]) -> dict[str, Any]:
    """`config` (from `<runtime> spec`) with `seccomp`, docker's devices and podman's caps; in place."""
    config["process"]["capabilities"] = {
        "bounding": list(CAPS), "effective": list(CAPS), "permitted": list(CAPS), "inheritable": [], "ambient": []
    }  # fmt: skip
    config["process"]["noNewPrivileges"] = True
    linux = config["linux"]
    linux["seccomp"] = seccomp
    linux.setdefault("resources", {})["devices"] = device_rules()
    return config
