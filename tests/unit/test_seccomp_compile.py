"""Compiling profiles with libseccomp, checked by running the produced BPF
in a small classic-BPF interpreter on made-up seccomp_data."""

from __future__ import annotations

import json
import struct
import time

import pytest

from supervisor.seccomp import bpf, libseccomp
from supervisor.seccomp.compile import compile_filter
from supervisor.seccomp.profile import DEFAULT, ProfileError, parse_json
from supervisor.units.capabilities import ALL_CAPS, CAPABILITIES, CONTAINER_DEFAULT

try:
    libseccomp.load()
except libseccomp.SeccompUnavailable:  # pragma: no cover - installed wherever systemd is
    pytest.skip("libseccomp.so.2 missing", allow_module_level=True)

ALLOW = 0x7FFF0000
EPERM = 0x00050000 | 1
ENOSYS = 0x00050000 | 38
NATIVE = libseccomp.native_arch()
X86_64 = libseccomp.arch_token("x86_64")


def run_bpf(program: bytes, nr: int, args: tuple[int, ...] = (), arch: int = NATIVE) -> int:
    """Evaluate a seccomp classic BPF program for one syscall."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    code = bpf.decode(program)
    a = x = 0
    pc = 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        cls = op & 0x07
        if op == 0x20:  # ld w abs
            a = struct.unpack_from("=I", data, k)[0]
        elif op == 0x00:  # ld imm
            a = k
        elif op == 0x01:  # ldx imm
            x = k
        elif op == 0x07:  # tax
            x = a
        elif op == 0x87:  # txa
            a = x
        elif cls == 0x04:  # alu
            src = x if op & 0x08 else k
            alu = op & 0xF0
            a = {0x00: a + src, 0x10: a - src, 0x50: a & src, 0x40: a | src, 0xA0: a ^ src}[alu] & 0xFFFFFFFF
        elif cls == 0x05:  # jmp
            if op == 0x05:
                pc += k
                continue
            src = x if op & 0x08 else k
            test = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}[op & 0xF0]
            pc += jt if test else jf
        elif op == 0x06:  # ret k
            return k
        elif op == 0x16:  # ret a
            return a
        else:
            raise AssertionError(f"instruction {op:#x} at {pc - 1} not in this interpreter")


def nr(name: str) -> int:
    return libseccomp.resolve(name)


@pytest.fixture(scope="module")
def podman() -> bytes:
    return compile_filter(DEFAULT, CONTAINER_DEFAULT)


@pytest.fixture(scope="module")
def sys_admin() -> bytes:
    return compile_filter(DEFAULT, CONTAINER_DEFAULT | {CAPABILITIES["SYS_ADMIN"]})


def test_the_allow_list(podman: bytes) -> None:
    for name in ("read", "write", "openat", "execve", "futex", "epoll_wait", "rt_sigreturn", "exit_group"):
        assert run_bpf(podman, nr(name)) == ALLOW, name
    for name in ("io_uring_setup", "add_key", "keyctl", "request_key", "mount", "unshare", "setns", "bpf",
                 "kexec_load", "init_module", "reboot", "swapon"):  # fmt: skip
        assert run_bpf(podman, nr(name)) == EPERM, name


def test_personality_takes_only_dockers_values(podman: bytes) -> None:
    for value in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert run_bpf(podman, nr("personality"), (value,)) == ALLOW, hex(value)
    for value in (0x0040000, 0x0400000, 1, 0x20001):
        assert run_bpf(podman, nr("personality"), (value,)) == EPERM, hex(value)


def test_clone_namespace_flags_need_sys_admin(podman: bytes, sys_admin: bytes) -> None:
    plain = 0x01200011  # what glibc's fork passes: CLONE_CHILD_SETTID|CHILD_CLEARTID|SIGCHLD
    newuser, newns = 0x10000000, 0x00020000
    assert run_bpf(podman, nr("clone"), (plain,)) == ALLOW
    assert run_bpf(podman, nr("clone"), (plain | newuser,)) == EPERM
    assert run_bpf(podman, nr("clone"), (plain | newns,)) == EPERM
    assert run_bpf(podman, nr("clone3")) == ENOSYS  # glibc then falls back on clone
    assert run_bpf(sys_admin, nr("clone"), (plain | newuser,)) == ALLOW
    assert run_bpf(sys_admin, nr("clone3")) == ALLOW
    assert run_bpf(sys_admin, nr("unshare"), (newns,)) == ALLOW


def test_caps_include_their_syscalls() -> None:
    program = compile_filter(DEFAULT, CONTAINER_DEFAULT | {CAPABILITIES["SYS_PTRACE"], CAPABILITIES["SYS_TIME"]})
    assert run_bpf(program, nr("kcmp")) == ALLOW
    assert run_bpf(compile_filter(DEFAULT, CONTAINER_DEFAULT), nr("kcmp")) == EPERM
    assert run_bpf(compile_filter(DEFAULT, CONTAINER_DEFAULT), nr("ptrace")) == ALLOW  # kernel >= 4.8, as docker
    assert run_bpf(program, nr("clock_settime")) == ALLOW
    assert run_bpf(program, nr("reboot")) == EPERM
    # chroot: SYS_CHROOT is in podman's default set
    assert run_bpf(compile_filter(DEFAULT, CONTAINER_DEFAULT), nr("chroot")) == ALLOW
    assert run_bpf(compile_filter(DEFAULT, frozenset()), nr("chroot")) == EPERM


def test_socket_families(podman: bytes) -> None:
    # docker's profile: families below 38, 39, and above 40 (not AF_ALG 38, AF_VSOCK 40)
    for family, expected in ((2, ALLOW), (17, ALLOW), (37, ALLOW), (38, EPERM), (39, ALLOW), (40, EPERM), (41, ALLOW)):
        assert run_bpf(podman, nr("socket"), (family,)) == expected, family


def test_numbers_past_the_profile_are_enosys_not_eperm(podman: bytes) -> None:
    assert run_bpf(podman, 1000) == ENOSYS
    assert run_bpf(podman, 0x3FFFFFFF) == ENOSYS


@pytest.mark.skipif(NATIVE != X86_64, reason="x86_64 with its x86 and x32 sub-architectures")
def test_architectures_like_docker(podman: bytes) -> None:
    x86, x32 = libseccomp.arch_token("x86"), libseccomp.arch_token("x32")
    assert run_bpf(podman, libseccomp.resolve("getpid", x86), arch=x86) == ALLOW
    assert run_bpf(podman, libseccomp.resolve("add_key", x86), arch=x86) == EPERM
    assert run_bpf(podman, libseccomp.resolve("getpid", x32), arch=x86_64_audit()) == ALLOW
    assert run_bpf(podman, libseccomp.resolve("add_key", x32), arch=x86_64_audit()) == EPERM
    assert run_bpf(podman, 0x40000000 | 1000, arch=x86_64_audit()) == ENOSYS
    # an architecture the filter does not name is killed, whatever the number
    aarch64 = libseccomp.arch_token("aarch64")
    assert run_bpf(podman, 172, arch=aarch64) in (0x00000000, 0x80000000)


def x86_64_audit() -> int:
    return 0xC000003E  # AUDIT_ARCH_X86_64: x32 calls carry it, with bit 30 in the number


def test_the_stub_agrees_with_libseccomp_below_the_highest_number(podman: bytes) -> None:
    """The ENOSYS stub only changes numbers no name in the profile has."""
    without = podman[len(bpf.enosys_stub(bpf.Native(NATIVE, 0, 0 if NATIVE == X86_64 else None))):]
    known = max(n for n in (nr(name) for name in DEFAULT.names()) if n >= 0)
    for number in range(known + 1):
        assert run_bpf(podman, number) == run_bpf(without, number), number
    assert run_bpf(without, known + 1) == EPERM and run_bpf(podman, known + 1) == ENOSYS


def test_a_blocklist_profile_allows_the_rest() -> None:
    profile = parse_json(
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], '
        '"action": "SCMP_ACT_ERRNO", "errnoRet": 30}]}'
    )
    program = compile_filter(profile, ALL_CAPS)
    assert run_bpf(program, nr("mkdirat")) == 0x00050000 | 30
    assert run_bpf(program, nr("add_key")) == ALLOW
    assert run_bpf(program, 1000) == ALLOW  # no ENOSYS stub under an allow default


def test_args_on_the_same_index_are_alternatives() -> None:
    profile = parse_json(
        '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",'
        ' "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},'
        ' {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"},'
        ' {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]}'
    )
    program = compile_filter(profile, CONTAINER_DEFAULT)
    assert run_bpf(program, nr("personality"), (1,)) == ALLOW
    assert run_bpf(program, nr("personality"), (2,)) == ALLOW
    assert run_bpf(program, nr("personality"), (3,)) == EPERM
    assert run_bpf(program, nr("kill"), (5, 9)) == ALLOW
    assert run_bpf(program, nr("kill"), (5, 15)) == EPERM


def test_an_unknown_syscall_name_is_an_error_naming_it() -> None:
    profile = parse_json('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "raed"], "action": "SCMP_ACT_ALLOW"}]}')
    with pytest.raises(ProfileError, match="unknown syscall 'raed'") as info:
        compile_filter(profile, CONTAINER_DEFAULT)
    assert info.value.syscall == "raed"


def test_names_docker_knows_but_this_libseccomp_does_not_are_left_out() -> None:
    newer = sorted(n for n in DEFAULT.names() if libseccomp.resolve(n) == libseccomp.NR_ERROR)
    rules = [{"names": ["read", *newer], "action": "SCMP_ACT_ALLOW"}]
    profile = parse_json(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}))
    assert run_bpf(compile_filter(profile, CONTAINER_DEFAULT), nr("read")) == ALLOW


def test_compiling_the_default_profile_is_quick_enough_to_cache() -> None:
    start = time.perf_counter()
    compile_filter(DEFAULT, CONTAINER_DEFAULT)
    assert time.perf_counter() - start < 1.0


def test_every_native_number_gets_what_the_profile_says(podman: bytes) -> None:
    """Walk every syscall number libseccomp knows on this architecture and
    compare the program's answer with the profile read by hand: allowed
    names without conditions on arguments are allowed, names the profile
    does not allow are EPERM, and clone3 is ENOSYS."""
    from supervisor.seccomp.profile import host_facts, rules_for

    _native, go_arch, kernel = host_facts()
    applied = rules_for(DEFAULT, {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
                                  "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}, go_arch, kernel)  # fmt: skip
    allowed = {n for r in applied if r.action == "allow" and not r.args for n in r.names}
    with_args = {n for r in applied if r.args for n in r.names}
    highest = max(n for n in (nr(name) for name in DEFAULT.names()) if n >= 0)
    checked = 0
    for number in range(highest + 1):
        name = libseccomp.name_of(number, NATIVE)
        if name is None or name in with_args:
            continue
        expected = ALLOW if name in allowed else ENOSYS if name == "clone3" else EPERM
        assert run_bpf(podman, number) == expected, (number, name)
        checked += 1
    assert checked > 300
