"""Classic BPF for seccomp: encoding, and the ENOSYS stub. Pure.

libseccomp answers the profile's default action (EPERM) for every syscall
no rule names, including ones newer than the profile. A program that probes
for a new syscall (glibc and clone3, io_uring users, ...) falls back on
ENOSYS but treats EPERM as a real refusal, so — as runc's patchbpf does —
a stub placed before libseccomp's program answers ENOSYS on the native
architecture for numbers above the highest one the profile knows. Every jump
in the stub lands inside it or on its end, the first instruction of
libseccomp's program, which loads what it needs itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter, host byte order
MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS

LD_W_ABS = 0x20
JMP_JA = 0x05
JMP_JEQ_K = 0x15
JMP_JGT_K = 0x25
JMP_JGE_K = 0x35
JMP_JSET_K = 0x45
ALU_AND_K = 0x54
RET_K = 0x06
# struct seccomp_data
OFFSET_NR = 0
OFFSET_ARCH = 4

RET_ERRNO = 0x00050000
ENOSYS = 38
X32_SYSCALL_BIT = 0x40000000


@dataclass(frozen=True)
class Native:
    """What the stub needs to know of the native architecture."""

    audit_arch: int  # AUDIT_ARCH_* (== libseccomp's arch token)
    max_nr: int  # the highest syscall number the profile knows there
    x32_max_nr: int | None = None  # x86_64 with x32 in the filter: same for x32 (bit 30 set)


def encode(instructions: list[tuple[int, int, int, int]]) -> bytes:
    return b"".join(INSTRUCTION.pack(*i) for i in instructions)


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    if len(program) % INSTRUCTION.size:
        raise ValueError(f"a BPF program is a multiple of {INSTRUCTION.size} bytes, got {len(program)}")
    return [INSTRUCTION.unpack_from(program, off) for off in range(0, len(program), INSTRUCTION.size)]


def enosys_stub(native: Native) -> bytes:
    """Instructions 0..n-1; a jump to n falls through to libseccomp's program."""
    enosys = (RET_K, 0, 0, RET_ERRNO | ENOSYS)
    if native.x32_max_nr is not None:
        #  0 A = arch      1 arch == native ? 2 : end
        #  2 A = nr        3 nr & X32 bit ? 5 : 4
        #  4 nr > max ? 6 : end       5 nr > x32 max ? 6 : end
        #  6 return ENOSYS            7 = end
        return encode([
            (LD_W_ABS, 0, 0, OFFSET_ARCH),
            (JMP_JEQ_K, 0, 5, native.audit_arch),
            (LD_W_ABS, 0, 0, OFFSET_NR),
            (JMP_JSET_K, 1, 0, X32_SYSCALL_BIT),
            (JMP_JGT_K, 1, 2, native.max_nr),
            (JMP_JGT_K, 0, 1, native.x32_max_nr),
            enosys,
        ])  # fmt: skip
    if native.audit_arch & 0xFFFF == 0x3E:  # x86_64 without x32: leave x32 numbers to libseccomp
        return encode([
            (LD_W_ABS, 0, 0, OFFSET_ARCH),
            (JMP_JEQ_K, 0, 4, native.audit_arch),
            (LD_W_ABS, 0, 0, OFFSET_NR),
            (JMP_JSET_K, 2, 0, X32_SYSCALL_BIT),
            (JMP_JGT_K, 0, 1, native.max_nr),
            enosys,
        ])  # fmt: skip
    return encode([
        (LD_W_ABS, 0, 0, OFFSET_ARCH),
        (JMP_JEQ_K, 0, 3, native.audit_arch),
        (LD_W_ABS, 0, 0, OFFSET_NR),
        (JMP_JGT_K, 0, 1, native.max_nr),
        enosys,
    ])  # fmt: skip
