"""SpawnSpec JSON round-trip and validation; exit-status mapping. Pure."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.runtime.reaper import exit_status_from_siginfo
from supervisor.runtime.spec import Bind, ContainerSpec, JoinSpec, RootfsMount, SpawnSpec, SpecError, UserNamespace

ROOTFS = RootfsMount(lowerdirs=("/l/base", "/l/top"), target="/run/supd/units/web/rootfs",
                     upperdir="/var/lib/supd/units/web/upper", workdir="/var/lib/supd/units/web/work")


def roundtrip(spec: SpawnSpec) -> SpawnSpec:
    return SpawnSpec.from_json(json.loads(json.dumps(spec.to_json())))


def test_plain_spec_round_trips() -> None:
    spec = SpawnSpec(argv=("/bin/true", "x"), env=(("A", "1"), ("B", "two words")), cwd="/tmp",
                     user="1000:1000", no_new_privs=True, umask=0o027, setsid=False)
    assert roundtrip(spec) == spec


def test_container_spec_round_trips() -> None:
    container = ContainerSpec(rootfs=ROOTFS, hostname="web", network="none",
                              binds=(Bind("/srv/www", "/www", True), Bind("/data", "/data")),
                              init="/usr/bin/tini-static",
                              etc_files=(("/etc/hosts", "/run/supd/units/web/etc/hosts"),))
    spec = SpawnSpec(argv=("/bin/httpd", "-f"), user="nobody", container=container, no_new_privs=True)
    assert roundtrip(spec) == spec
    assert spec.to_json()["container"]["etc_files"] == [["/etc/hosts", "/run/supd/units/web/etc/hosts"]]
    userns = SpawnSpec(argv=("/bin/sh",), container=ContainerSpec(ROOTFS, userns=UserNamespace(100000, 200000)))
    assert roundtrip(userns) == userns
    assert userns.to_json()["container"]["userns"] == {"uid": 100000, "gid": 200000, "count": 65536}


def test_join_spec_round_trips() -> None:
    spec = SpawnSpec(argv=("/bin/sh",), join=JoinSpec(pid=42, cgroup_procs=("/sys/fs/cgroup/pids/x/cgroup.procs",)))
    assert roundtrip(spec) == spec


@given(
    argv=st.lists(st.text(min_size=1), min_size=1, max_size=5),
    env=st.dictionaries(st.text(min_size=1).filter(lambda k: "=" not in k), st.text(), max_size=5),
    user=st.none() | st.text(min_size=1),
)
def test_any_plain_spec_round_trips(argv: list[str], env: dict[str, str], user: str | None) -> None:
    spec = SpawnSpec(argv=tuple(argv), env=tuple(sorted(env.items())), user=user)
    assert roundtrip(spec) == spec


def test_rootfs_mount_from_a_plan_object_and_a_dict() -> None:
    @dataclass(frozen=True)
    class Plan:
        lowerdirs: tuple[str, ...]
        upperdir: str | None
        workdir: str | None
        target: str
        readonly: bool
        chdir: str | None

    plan = Plan(("0", "1"), "/u", "/w", "/t", False, "/layers")
    mount = RootfsMount.of(plan)
    assert mount == RootfsMount(("0", "1"), "/t", "/u", "/w", False, "/layers")
    assert RootfsMount.of(mount.to_json()) == mount


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: SpawnSpec(argv=()), "argv"),
        (lambda: SpawnSpec(argv=("",)), "argv"),
        (lambda: SpawnSpec(argv=("x",), env=(("A=B", "c"),)), "env"),
        (lambda: SpawnSpec(argv=("x",), container=ContainerSpec(ROOTFS), join=JoinSpec(1)), "join"),
        (lambda: RootfsMount(lowerdirs=(), target="/t"), "rootfs.lowerdirs"),
        (lambda: RootfsMount(lowerdirs=("/a",), target="t"), "rootfs.target"),
        (lambda: RootfsMount(lowerdirs=("/a",), target="/t", upperdir="/u"), "rootfs.workdir"),
        (lambda: ContainerSpec(ROOTFS, network="bridge"), "container.network"),  # type: ignore[arg-type]
        (lambda: ContainerSpec(ROOTFS, binds=(Bind("/a", "relative"),)), "container.binds.target"),
        (lambda: ContainerSpec(ROOTFS, etc_files=(("etc/hosts", "/run/h"),)), "container.etc_files"),
        (lambda: ContainerSpec(ROOTFS, etc_files=(("/etc/hosts", "h"),)), "container.etc_files"),
        # container root must never be host root
        (lambda: UserNamespace(uid=0, gid=100000), "container.userns.uid"),
        (lambda: UserNamespace(uid=100000, gid=100000, count=0), "container.userns.count"),
    ],
)
def test_invalid_specs_say_what_was_expected(make: object, key: str) -> None:
    with pytest.raises(SpecError) as info:
        make()  # type: ignore[operator]
    assert info.value.key == key
    assert str(info.value).startswith(f"spawn spec {key}: expected ")


def test_exit_status_from_siginfo() -> None:
    exited = exit_status_from_siginfo(os.CLD_EXITED, 3)
    assert (exited.code, exited.signal, exited.reason) == (3, None, "exit 3")
    killed = exit_status_from_siginfo(os.CLD_KILLED, signal.SIGKILL)
    assert (killed.code, killed.signal, killed.reason) == (None, 9, "signal SIGKILL")
    dumped = exit_status_from_siginfo(os.CLD_DUMPED, signal.SIGSEGV)
    assert (dumped.code, dumped.signal, dumped.reason) == (None, 11, "signal SIGSEGV")
