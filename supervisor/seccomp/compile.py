"""Profile + capability set -> the classic BPF program the spawner installs.

libseccomp (see libseccomp.py) does the compiling: the architecture checks,
the syscall numbers per architecture, the argument comparisons. supd adds
only what libseccomp leaves out: the choice of rules (docker's includes and
excludes), and the ENOSYS stub for syscalls newer than the profile (bpf.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from supervisor.seccomp import bpf, libseccomp
from supervisor.seccomp.profile import KNOWN_NAMES, EPERM, Profile, ProfileError, host_facts, rules_for
from supervisor.units.capabilities import NAMES

# actions whose filter lets unknown syscalls through anyway: no ENOSYS stub
_PERMISSIVE = ("allow", "log")


def action_value(action: str, errno: int | None) -> int:
    if action == "allow":
        return libseccomp.ACT_ALLOW
    if action == "errno":
        return libseccomp.act_errno(EPERM if errno is None else errno)
    if action in ("kill", "kill_thread"):
        return libseccomp.ACT_KILL_THREAD
    if action == "kill_process":
        return libseccomp.ACT_KILL_PROCESS
    if action == "trap":
        return libseccomp.ACT_TRAP
    if action == "log":
        return libseccomp.ACT_LOG
    if action == "trace":
        return libseccomp.act_trace(EPERM if errno is None else errno)
    raise ProfileError(f"unsupported action {action}")


def check_names(profile: Profile) -> None:
    """ProfileError naming the first syscall neither this host's libseccomp
    nor docker's default profile knows (a typo, most likely). docker ignores
    such names; supd refuses them so a typo can't silently weaken a rule."""
    for rule in profile.rules:
        for name in rule.names:
            if name not in KNOWN_NAMES and libseccomp.resolve(name) == libseccomp.NR_ERROR:
                raise ProfileError(f"unknown syscall {name!r}", syscall=name)


def compile_filter(profile: Profile, caps: Iterable[int]) -> bytes:
    """The BPF program (struct sock_filter[], host byte order) for a process
    keeping capability numbers `caps`."""
    native_name, go_arch, kernel = host_facts()
    check_names(profile)
    cap_names = [NAMES[c] for c in caps if c in NAMES]
    default = action_value(profile.default_action, profile.default_errno)
    native = libseccomp.native_arch()
    with libseccomp.Filter(default) as flt:
        # the spawner sets no_new_privs itself; the program is only exported
        flt.set_attr(libseccomp.ATTR_CTL_NNP, 0)
        # a binary tree of syscall numbers instead of a list: fewer
        # instructions run per syscall (libseccomp >= 2.5)
        try:
            flt.set_attr(libseccomp.ATTR_CTL_OPTIMIZE, 2)
        except libseccomp.LibseccompError:
            pass  # an older libseccomp: the list works the same, a bit slower
        arches = [native]
        for name in profile.arches_for(native_name):
            token = libseccomp.arch_token(name)
            if token and token not in arches:
                flt.add_arch(token)
                arches.append(token)
        for rule in rules_for(profile, cap_names, go_arch, kernel):
            action = action_value(rule.action, rule.errno)
            if action == default:
                continue  # libseccomp refuses a rule that changes nothing
            for name in rule.names:
                number = libseccomp.resolve(name)
                if number == libseccomp.NR_ERROR:
                    continue  # newer than this libseccomp: as docker, leave it out
                for args in rule.arg_sets():
                    flt.add_rule(action, number, [(a.index, a.op, a.value, a.value_two) for a in args])
        program = flt.export_bpf()
    if profile.default_action in _PERMISSIVE:
        return program
    stub = bpf.enosys_stub(_native_facts(profile, native, arches))
    if (len(stub) + len(program)) // bpf.INSTRUCTION.size > bpf.MAX_INSTRUCTIONS:
        raise ProfileError(f"the compiled filter is longer than the kernel's {bpf.MAX_INSTRUCTIONS} instructions")
    return stub + program


def _native_facts(profile: Profile, native: int, arches: list[int]) -> bpf.Native:
    names = profile.names()

    def highest(arch: int) -> int:
        return max((n for n in (libseccomp.resolve(name, arch) for name in names) if n >= 0), default=0)

    x32 = libseccomp.arch_token("x32")
    x32_max = highest(x32) if x32 in arches and native == libseccomp.arch_token("x86_64") else None
    return bpf.Native(audit_arch=native, max_nr=highest(native), x32_max_nr=x32_max)
