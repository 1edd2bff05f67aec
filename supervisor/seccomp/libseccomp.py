"""A thin ctypes binding of libseccomp.so.2: only what compiling a filter
to classic BPF needs.

Why ctypes and not a package: libseccomp's own Python binding is a Cython
module that only distributions ship (python3-seccomp, built for the system
interpreter, not on PyPI), and pyseccomp on PyPI has been unmaintained since
2021. libseccomp itself is what runc, crun, podman and systemd compile with,
and is installed wherever systemd is. Loaded lazily, by soname, in the
daemon only (the spawner installs the bytes and never loads it).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence

SONAME = "libseccomp.so.2"
INSTALL_HINT = "install libseccomp2 (apt-get install libseccomp2)"

# enum scmp_compare
COMPARE = {"ne": 1, "lt": 2, "le": 3, "eq": 4, "ge": 5, "gt": 6, "masked_eq": 7}
# enum scmp_filter_attr
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_OPTIMIZE = 8
# __NR_SCMP_ERROR: a name libseccomp does not know
NR_ERROR = -1

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000


def act_errno(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


def act_trace(number: int) -> int:
    return 0x7FF00000 | (number & 0xFFFF)


class SeccompUnavailable(RuntimeError):
    """libseccomp.so.2 cannot be loaded."""


class LibseccompError(RuntimeError):
    pass


class ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp
    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))  # fmt: skip


_lib: ctypes.CDLL | None = None


def load() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(SONAME, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"seccomp: cannot load {SONAME} ({exc}): {INSTALL_HINT}") from None
    vp, u32, c_int, c_char_p = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_char_p
    for name, restype, argtypes in (
        ("seccomp_init", vp, (u32,)),
        ("seccomp_release", None, (vp,)),
        ("seccomp_arch_add", c_int, (vp, u32)),
        ("seccomp_arch_native", u32, ()),
        ("seccomp_arch_resolve_name", u32, (c_char_p,)),
        ("seccomp_syscall_resolve_name", c_int, (c_char_p,)),
        ("seccomp_syscall_resolve_name_arch", c_int, (u32, c_char_p)),
        ("seccomp_syscall_resolve_num_arch", vp, (u32, c_int)),
        ("seccomp_rule_add_array", c_int, (vp, u32, c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp))),
        ("seccomp_attr_set", c_int, (vp, c_int, u32)),
        ("seccomp_export_bpf", c_int, (vp, c_int)),
    ):
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    _lib = lib
    return lib


def arch_token(name: str) -> int:
    """libseccomp's token (the AUDIT_ARCH_* value) for "x86_64", "x32"...; 0 if unknown."""
    return int(load().seccomp_arch_resolve_name(name.encode()))


def native_arch() -> int:
    return int(load().seccomp_arch_native())


def resolve(name: str, arch: int | None = None) -> int:
    """The syscall number (negative: libseccomp's pseudo number for a syscall
    this arch lacks); NR_ERROR when libseccomp does not know the name."""
    lib = load()
    if arch is None:
        return int(lib.seccomp_syscall_resolve_name(name.encode()))
    return int(lib.seccomp_syscall_resolve_name_arch(arch, name.encode()))


def name_of(number: int, arch: int) -> str | None:
    """The syscall `number` is on `arch`, or None (libseccomp's answer)."""
    pointer = load().seccomp_syscall_resolve_num_arch(arch, number)
    if not pointer:
        return None
    try:
        return ctypes.string_at(pointer).decode()
    finally:
        _libc.free(pointer)


_libc = ctypes.CDLL(None)
_libc.free.argtypes = (ctypes.c_void_p,)
_libc.free.restype = None


class Filter:
    """One scmp_filter_ctx; use as a context manager so it is released."""

    def __init__(self, default_action: int) -> None:
        self._lib = load()
        self._ctx = self._lib.seccomp_init(default_action)
        if not self._ctx:
            raise LibseccompError(f"seccomp_init({default_action:#x}) failed")

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def add_arch(self, token: int) -> None:
        rc = self._lib.seccomp_arch_add(self._ctx, token)
        if rc not in (0, -errno.EEXIST):
            raise LibseccompError(f"seccomp_arch_add({token:#x}): {os.strerror(-rc)}")

    def set_attr(self, attr: int, value: int) -> None:
        rc = self._lib.seccomp_attr_set(self._ctx, attr, value)
        if rc != 0:
            raise LibseccompError(f"seccomp_attr_set({attr}, {value}): {os.strerror(-rc)}")

    def add_rule(self, action: int, syscall: int, args: Sequence[tuple[int, str, int, int]] = ()) -> None:
        """args: (index, op, datum_a, datum_b) that must all hold."""
        array = (ArgCmp * max(len(args), 1))()
        for i, (index, op, a, b) in enumerate(args):
            array[i] = ArgCmp(index, COMPARE[op], a, b)
        rc = self._lib.seccomp_rule_add_array(self._ctx, action, syscall, len(args), array)
        if rc != 0:
            raise LibseccompError(f"seccomp_rule_add(syscall {syscall}): {os.strerror(-rc)}")

    def export_bpf(self) -> bytes:
        fd = os.memfd_create("supd-seccomp", os.MFD_CLOEXEC)
        try:
            rc = self._lib.seccomp_export_bpf(self._ctx, fd)
            if rc != 0:
                raise LibseccompError(f"seccomp_export_bpf: {os.strerror(-rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
