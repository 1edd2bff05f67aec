"""cgroup v2 device rules: a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup2 has no devices files; the kernel runs the BPF programs attached to a
cgroup (and its ancestors) at every open(2) and mknod(2) of a device node by
a process inside, and refuses when one returns 0. This is how runc, crun and
systemd enforce device rules on v2; supd assembles the same kind of program
from a `DevicePolicy` here.

`assemble` is pure (raw eBPF instructions, tested without root against the
policy's own semantics); `attach` loads it with bpf(2) and attaches it to a
scope directory. The program uses no helper, so its license string only has
to be present (GPL-compatibility matters for GPL-only helpers).

The program reads `struct bpf_cgroup_dev_ctx` { u32 access_type; u32 major;
u32 minor; }, where access_type is (access << 16) | device type, with access
bits MKNOD=1, READ=2, WRITE=4 and types BLOCK=1, CHAR=2; then, for each rule,
falls through its checks to "return 1" or jumps to the next rule; the end is
"return 0" (deny).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
import threading
from collections import OrderedDict
from pathlib import Path

from supervisor.cgroups.devices import ALL, BLOCK, CHAR, DevicePolicy, DeviceRule

# --- bpf(2)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
# Programs of ancestors and descendants all run (systemd attaches its own
# with this flag too); one of them saying no is enough to refuse.
BPF_F_ALLOW_MULTI = 2
SYS_BPF = {"x86_64": 321, "aarch64": 280}
LICENSE = b"Apache-2.0"
PROG_NAME = b"supd_devices"  # at most 15 bytes of [A-Za-z0-9_.]
LOG_SIZE = 64 * 1024

# --- struct bpf_cgroup_dev_ctx
DEV_TYPE = {BLOCK: 1, CHAR: 2}
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}
CTX_ACCESS_TYPE = 0
CTX_MAJOR = 4
CTX_MINOR = 8

# --- eBPF opcodes (class | op | source)
LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
ALU32_AND_K = 0x54  # w_dst &= imm
ALU32_RSH_K = 0x74  # w_dst >>= imm
ALU32_MOV_X = 0xBC  # w_dst = w_src
ALU64_MOV_K = 0xB7  # dst = imm
JMP_JNE_K = 0x55  # if dst != imm: pc += off
JMP_JNE_X = 0x5D  # if dst != src: pc += off
JMP_EXIT = 0x95

# registers: r1 = ctx on entry; r2 type, r3 access, r4 major, r5 minor
R0, R1, R2, R3, R4, R5 = range(6)

Insn = tuple[int, int, int, int, int]  # (code, dst, src, off, imm)


class DeviceProgramError(OSError):
    """bpf(2) refused the program or its attachment; says which and why."""


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:
    return (code, dst, src, off, imm)


def _rule_block(r: DeviceRule) -> list[Insn]:
    """The checks of one rule, then "return 1". Each check jumps past the
    rest of the block (to the next rule) when it does not hold."""
    checks: list[tuple[int, int, int, int]] = []  # (code, dst, src, imm) of each instruction
    if r.kind != ALL:
        checks.append((JMP_JNE_K, R2, 0, DEV_TYPE[r.kind]))
    if r.access != "rwm":
        mask = sum(ACCESS_BITS[c] for c in r.access)
        # requested ⊆ allowed  <=>  (requested & allowed) == requested
        checks.append((ALU32_MOV_X, R1, R3, 0))
        checks.append((ALU32_AND_K, R1, 0, mask))
        checks.append((JMP_JNE_X, R1, R3, 0))
    if r.major is not None:
        checks.append((JMP_JNE_K, R4, 0, _imm32(r.major)))
    if r.minor is not None:
        checks.append((JMP_JNE_K, R5, 0, _imm32(r.minor)))
    length = len(checks) + 2  # the checks, "r0 = 1", "exit"
    block: list[Insn] = []
    for i, (code, dst, src, imm) in enumerate(checks):
        # a jump's offset counts from the instruction after it
        off = length - i - 1 if code in (JMP_JNE_K, JMP_JNE_X) else 0
        block.append(_insn(code, dst, src, off, imm))
    return [*block, _insn(ALU64_MOV_K, R0, 0, 0, 1), _insn(JMP_EXIT)]


def _imm32(n: int) -> int:
    """A u32 as the signed imm field. Jumps compare 64-bit registers with the
    sign-extended imm, so numbers past 2^31 could never match: refuse them
    (device majors are 12 bits, minors 20)."""
    if not 0 <= n < 2**31:
        raise ValueError(f"device number {n} does not fit a BPF immediate")
    return n


def assemble(policy: DevicePolicy) -> list[Insn]:
    """The program for `policy`. The verifier refuses unreachable code, so
    nothing is emitted after a rule that allows everything."""
    prog: list[Insn] = [
        _insn(LDX_MEM_W, R2, R1, CTX_ACCESS_TYPE),
        _insn(ALU32_AND_K, R2, 0, 0, 0xFFFF),  # device type
        _insn(LDX_MEM_W, R3, R1, CTX_ACCESS_TYPE),
        _insn(ALU32_RSH_K, R3, 0, 0, 16),  # access bits
        _insn(LDX_MEM_W, R4, R1, CTX_MAJOR),
        _insn(LDX_MEM_W, R5, R1, CTX_MINOR),
    ]
    for r in policy.allow:
        prog.extend(_rule_block(r))
        if r.unconditional():
            return prog
    prog.extend([_insn(ALU64_MOV_K, R0, 0, 0, 0), _insn(JMP_EXIT)])
    return prog


def encode(prog: list[Insn]) -> bytes:
    """struct bpf_insn, little-endian (dst in the low nibble)."""
    if sys.byteorder != "little":
        raise DeviceProgramError(errno.ENOTSUP, "device programs are only encoded for little-endian hosts")
    return b"".join(struct.pack("<BBhi", code, (src << 4) | dst, off, imm) for code, dst, src, off, imm in prog)


# --- the kernel side


def _sys_bpf() -> int:
    number = SYS_BPF.get(platform.machine())
    if number is None:
        raise DeviceProgramError(errno.ENOSYS, f"bpf(2) syscall number unknown for {platform.machine()}")
    return number


LOAD_ATTEMPTS = 5  # libbpf's PROG_LOAD_ATTEMPTS
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    result = _libc.syscall(_sys_bpf(), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if result < 0:
        return -ctypes.get_errno()
    return int(result)


def load(policy: DevicePolicy) -> int:
    """Load the program; returns its fd (the caller closes it)."""
    code = encode(assemble(policy))
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(LICENSE)
    log = ctypes.create_string_buffer(LOG_SIZE)

    def attempt(with_log: bool) -> int:
        attr = ctypes.create_string_buffer(72)
        struct.pack_into("<IIQQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                         ctypes.addressof(insns), ctypes.addressof(license_))  # fmt: skip
        if with_log:
            struct.pack_into("<IIQ", attr, 24, 1, LOG_SIZE, ctypes.addressof(log))
        struct.pack_into("16s", attr, 48, PROG_NAME)
        struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)  # expected_attach_type
        return _bpf(BPF_PROG_LOAD, attr)

    # The kernel answers EAGAIN when the verifier was interrupted (a signal
    # arrived: supd gets a SIGCHLD for every exit); libbpf retries the same way.
    for _ in range(LOAD_ATTEMPTS):
        fd = attempt(False)
        if fd >= 0:
            return fd
        if -fd not in (errno.EAGAIN, errno.EINTR):
            break
    err = -fd
    if err == errno.EINVAL or err == errno.EACCES:
        attempt(True)  # again with the verifier's log, to say why
    detail = log.value.decode(errors="replace").strip().splitlines()[-3:] if log.value else []
    why = os.strerror(err) + (f" (verifier: {' / '.join(detail)})" if detail else "")
    raise DeviceProgramError(err, f"bpf(BPF_PROG_LOAD) of a cgroup device program failed: {why}")


# Loaded programs by policy: nearly every container has the default one, and
# one program may be attached to any number of cgroups, so a start attaches
# instead of running the verifier again. Closing an evicted fd leaves its
# attachments in place (each holds the program).
_PROGRAMS: OrderedDict[DevicePolicy, int] = OrderedDict()
PROGRAMS_KEPT = 16


# Scopes are made from worker threads. Held from looking a program up until
# it is attached, so another start cannot evict (close) the fd in between.
_PROGRAMS_LOCK = threading.RLock()


def program_for(policy: DevicePolicy) -> int:
    """The loaded program of `policy` (an fd this module keeps; valid while
    the caller holds _PROGRAMS_LOCK)."""
    with _PROGRAMS_LOCK:
        prog = _PROGRAMS.get(policy)
        if prog is not None:
            _PROGRAMS.move_to_end(policy)
            return prog
        prog = _PROGRAMS[policy] = load(policy)
        while len(_PROGRAMS) > PROGRAMS_KEPT:
            os.close(_PROGRAMS.popitem(last=False)[1])
        return prog


def attach(cgroup: Path, policy: DevicePolicy) -> None:
    """Attach the policy's program to the cgroup2 directory `cgroup`; the
    program goes when the cgroup is removed."""
    try:
        target = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise DeviceProgramError(e.errno or errno.EIO, f"{cgroup}: cannot open the cgroup: {e.strerror}") from e
    try:
        with _PROGRAMS_LOCK:
            prog = program_for(policy)
            attr = ctypes.create_string_buffer(20)
            struct.pack_into("<IIII", attr, 0, target, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
            result = _bpf(BPF_PROG_ATTACH, attr)
        if result < 0:
            raise DeviceProgramError(
                -result, f"{cgroup}: bpf(BPF_PROG_ATTACH) of the device program failed: {os.strerror(-result)}"
            )
    finally:
        os.close(target)
