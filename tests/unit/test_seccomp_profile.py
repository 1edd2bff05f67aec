"""docker/OCI seccomp JSON -> Profile, and which rules apply (pure)."""

from __future__ import annotations

import json

import pytest

from supervisor.seccomp.profile import DEFAULT, KNOWN_NAMES, Arg, ProfileError, Rule, parse_json, rules_for

PODMAN = frozenset({"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
                    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})  # fmt: skip


def names(rules: list[Rule]) -> set[str]:
    return {n for r in rules if r.action == "allow" for n in r.names}


def test_the_builtin_profile_is_dockers() -> None:
    assert (DEFAULT.default_action, DEFAULT.default_errno) == ("errno", 1)
    assert dict(DEFAULT.arch_map)["x86_64"] == ("x86", "x32")
    assert {"read", "openat", "clone", "personality", "io_uring_setup"} - KNOWN_NAMES == {"io_uring_setup"}
    assert DEFAULT.arches_for("x86_64") == ("x86_64", "x86", "x32")


def test_conditions_by_caps_arch_and_kernel() -> None:
    plain = rules_for(DEFAULT, PODMAN, "amd64", (6, 1))
    assert "arch_prctl" in names(plain) and "set_tls" not in names(plain)
    assert "mount" not in names(plain) and "unshare" not in names(plain)
    assert "ptrace" in names(plain)  # minKernel 4.8
    assert "ptrace" not in names(rules_for(DEFAULT, PODMAN, "amd64", (4, 4)))
    clone3 = [r for r in plain if r.names == ("clone3",)]
    assert [(r.action, r.errno) for r in clone3] == [("errno", 38)]
    admin = rules_for(DEFAULT, PODMAN | {"SYS_ADMIN"}, "amd64", (6, 1))
    assert {"mount", "unshare", "clone3", "setns"} <= names(admin)
    assert not [r for r in admin if r.names == ("clone3",) and r.action == "errno"]
    # the masked clone rule is only for those without SYS_ADMIN, and not on s390
    masked = [r for r in plain if r.names == ("clone",)]
    assert [r.args for r in masked] == [(Arg(0, "masked_eq", 0x7E020000, 0),)]


def test_a_docker_profile_parses() -> None:
    profile = parse_json(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "includes": {"minKernel": "4.8"}},
            {"name": "getpid", "action": "SCMP_ACT_LOG"},
        ],
    }))  # fmt: skip
    assert profile.architectures == ("x86_64", "x86")
    assert profile.arches_for("x86_64") == ("x86_64", "x86")
    assert profile.rules[1] == Rule(("clone",), "allow", None, (Arg(0, "masked_eq", 2114060288, 0),),
                                    exclude_caps=("SYS_ADMIN",), min_kernel=(4, 8))  # fmt: skip
    assert profile.rules[2].names == ("getpid",) and profile.rules[2].action == "log"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"syscalls": []}', "defaultAction: expected an action"),
        ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "unsupported action SCMP_ACT_NOTIFY"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}', "defaultErrnoRet: expected an errno"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}', "syscalls: expected a list"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}', r"syscalls\[0\].action"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["re ad"], "action": "SCMP_ACT_ALLOW"}]}',
         "is no syscall name"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
         ' "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', r"args\[0\].index: expected 0..5"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
         ' "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}', r"args\[0\].op"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
         ' "includes": {"minKernel": "four"}}]}', "includes.minKernel"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
         ' "includes": {"kernel": "4.8"}}]}', "unknown condition"),
        ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}', "architectures"),
    ],
)
def test_bad_profiles_say_where(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_json(text)
