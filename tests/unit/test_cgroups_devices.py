"""Device rules (cgroups/devices.py) and the v2 program assembled from them
(cgroups/devicebpf.py), without root: the program is run by a small eBPF
interpreter of the instructions it uses and must agree with the policy's
own semantics on every device and access combination tried."""

from __future__ import annotations

import itertools
import struct

import pytest

from supervisor.cgroups import devicebpf
from supervisor.cgroups.devices import (
    DOCKER_DEFAULT,
    DevicePolicy,
    DeviceRule,
    canonical_access,
    container_policy,
    rule,
    systemd_device_allow,
    v1_list_lines,
    v1_writes,
)


def test_docker_default_list() -> None:
    lines = v1_list_lines(DevicePolicy(DOCKER_DEFAULT))
    assert lines == [
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm",
        "c 1:5 rwm", "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm",
    ]  # fmt: skip
    # not tun (runc re-adds it for compatibility; the list has it not)
    assert "c 10:200 rwm" not in lines


def test_policy_semantics() -> None:
    p = container_policy()
    assert p.permits("c", 1, 3, "rw")
    assert p.permits("c", 136, 7, "rw")
    assert p.permits("c", 1, 11, "m")  # mknod of anything
    assert p.permits("b", 254, 0, "m")
    assert not p.permits("c", 1, 11, "w")  # /dev/kmsg
    assert not p.permits("b", 254, 0, "r")  # a disk
    assert not p.permits("c", 10, 229, "rw")  # fuse: only when asked for
    fuse = container_policy([rule("c", 10, 229, "rw")])
    assert fuse.permits("c", 10, 229, "rw") and fuse.permits("c", 10, 229, "m")  # mknod: c *:* m
    assert not fuse.permits("c", 10, 200, "r")


def test_extra_rules_are_appended_once() -> None:
    p = container_policy([rule("c", 1, 3), rule("c", 10, 200, "rw")])
    assert p.allow.count(rule("c", 1, 3)) == 1
    assert p.allow[-1] == rule("c", 10, 200, "rw")


def test_v1_writes_deny_all_first() -> None:
    writes = v1_writes(container_policy())
    assert writes[0] == ("devices.deny", "a")
    assert writes[1:3] == [("devices.allow", "c *:* m"), ("devices.allow", "b *:* m")]


def test_systemd_entries() -> None:
    entries = systemd_device_allow(container_policy([rule("c", 10, 229), rule("b", 7, 0, "r")]))
    assert entries[:4] == [("char-*", "m"), ("block-*", "m"), ("/dev/char/1:3", "rwm"), ("/dev/char/1:8", "rwm")]
    assert ("char-136", "rwm") in entries
    assert entries[-2:] == [("/dev/char/10:229", "rwm"), ("/dev/block/7:0", "r")]
    with pytest.raises(ValueError, match="cannot express"):
        systemd_device_allow(DevicePolicy((DeviceRule("c", None, 3, "r"),)))


@pytest.mark.parametrize("bad", ["", "x", "rr", "rwmx"])
def test_access_is_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="r, w and m"):
        canonical_access(bad)


def test_rules_are_checked() -> None:
    assert canonical_access("mwr") == "rwm"
    with pytest.raises(ValueError):
        DeviceRule("x", 1, 1, "r")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DeviceRule("a", 1, None, "r")
    with pytest.raises(ValueError):
        DeviceRule("c", -1, None, "r")
    with pytest.raises(ValueError):
        DeviceRule("c", 1, 1, "wr")  # not canonical


# --- the BPF program


def run(prog: list[devicebpf.Insn], kind: str, major: int, minor: int, access: str) -> int:
    """Interpret the instructions `assemble` emits, on one bpf_cgroup_dev_ctx."""
    acc = sum(devicebpf.ACCESS_BITS[c] for c in access)
    ctx = struct.pack("<III", (acc << 16) | devicebpf.DEV_TYPE[kind], major, minor)
    regs = [0] * 11
    mask32, mask64 = 2**32 - 1, 2**64 - 1
    pc = 0
    for _step in range(10_000):
        code, dst, src, off, imm = prog[pc]
        pc += 1
        if code == devicebpf.LDX_MEM_W:
            assert src == devicebpf.R1 and regs[1] == 0, "loads only from ctx, before r1 is reused"
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == devicebpf.ALU32_AND_K:
            regs[dst] = (regs[dst] & imm) & mask32
        elif code == devicebpf.ALU32_RSH_K:
            regs[dst] = (regs[dst] & mask32) >> imm
        elif code == devicebpf.ALU32_MOV_X:
            regs[dst] = regs[src] & mask32
        elif code == devicebpf.ALU64_MOV_K:
            regs[dst] = imm & mask64
        elif code == devicebpf.JMP_JNE_K:
            if regs[dst] != imm & mask64:
                pc += off
        elif code == devicebpf.JMP_JNE_X:
            if regs[dst] != regs[src]:
                pc += off
        elif code == devicebpf.JMP_EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("program did not exit")


POLICIES = {
    "default": container_policy(),
    "extras": container_policy([rule("c", 10, 229, "rw"), rule("b", 7, None, "r"), rule("c", 10, 200, "m")]),
    "empty": DevicePolicy(()),
    "allow-all-first": DevicePolicy((rule("a", None, None), rule("c", 1, 3))),
}
DEVICES = [("c", 1, 3), ("c", 1, 11), ("c", 5, 2), ("c", 136, 0), ("c", 136, 99), ("c", 10, 229),
           ("c", 10, 200), ("b", 7, 0), ("b", 7, 3), ("b", 254, 0), ("b", 1, 3), ("c", 4095, 2**20 - 1)]  # fmt: skip
ACCESSES = ["r", "w", "m", "rw", "rm", "wm", "rwm"]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_program_agrees_with_policy(name: str) -> None:
    policy = POLICIES[name]
    prog = devicebpf.assemble(policy)
    for (kind, major, minor), access in itertools.product(DEVICES, ACCESSES):
        want = 1 if policy.permits(kind, major, minor, access) else 0  # type: ignore[arg-type]
        assert run(prog, kind, major, minor, access) == want, (name, kind, major, minor, access)


def test_program_has_no_unreachable_code() -> None:
    """The verifier refuses unreachable instructions: after an allow-all rule
    nothing follows, and every jump lands inside the program."""
    prog = devicebpf.assemble(POLICIES["allow-all-first"])
    assert prog[-2:] == [(devicebpf.ALU64_MOV_K, 0, 0, 0, 1), (devicebpf.JMP_EXIT, 0, 0, 0, 0)]
    for policy in POLICIES.values():
        prog = devicebpf.assemble(policy)
        for i, (code, _dst, _src, off, _imm) in enumerate(prog):
            if code in (devicebpf.JMP_JNE_K, devicebpf.JMP_JNE_X):
                assert 0 <= i + 1 + off < len(prog)


def test_encoding() -> None:
    code = devicebpf.encode([(devicebpf.JMP_JNE_X, 1, 3, 5, 0), (devicebpf.ALU64_MOV_K, 0, 0, 0, 1)])
    assert code == bytes([0x5D, 0x31, 5, 0, 0, 0, 0, 0, 0xB7, 0x00, 0, 0, 1, 0, 0, 0])


def test_huge_device_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="immediate"):
        devicebpf.assemble(DevicePolicy((rule("c", 2**31, 0),)))


def test_cgroupfs_refuses_a_container_it_cannot_confine() -> None:
    """No v1 devices hierarchy and no cgroup2 directory in the ref: an error
    naming the unit, before anything is written."""
    from pathlib import Path

    from supervisor.cgroups.cgroupfs import CgroupfsDriver
    from supervisor.cgroups.driver import CgroupError, CgroupRef

    ref = CgroupRef(unit="web", scope="supd-web.scope", slice="supd.slice",
                    paths=(("memory", Path("/nonexistent/memory/supd-web.scope")),), driver="cgroupfs")  # fmt: skip
    with pytest.raises(CgroupError, match="unit web: no v1 devices hierarchy and no cgroup2 one"):
        CgroupfsDriver._apply_devices(ref, container_policy())
