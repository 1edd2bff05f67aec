"""[exec].cap_add, cap_drop and seccomp: parsing, bad input, and what the
daemon sends the spawner (pure, plus libseccomp for the profile checks)."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pytest

from supervisor.daemon.spawnspec import build_exec_spec, build_spawn_spec
from supervisor.runtime.spec import SpawnSpec
from supervisor.seccomp.unitfilter import FilterCache, SeccompError
from supervisor.units.capabilities import ALL_CAPS, CAPABILITIES, CONTAINER_DEFAULT
from supervisor.units.parse import UnitFileError, load_unit, parse_unit

FILE = Path("/etc/supd/units/web.toml")
PLAN = {"lowerdirs": ["/l"], "upperdir": "/u", "workdir": "/w", "target": "/t", "readonly": False, "chdir": None}


def unit(text: str, file: Path = FILE) -> object:
    return parse_unit("web", tomllib.loads(text), file)


def container(exec_extra: str = "", rootfs_extra: str = "") -> str:
    return f'[exec]\ncommand = ["/bin/sh"]\n{exec_extra}\n[rootfs]\nlayers = ["/l"]\n{rootfs_extra}\n'


def test_defaults_container_gets_podmans_set_and_docker_seccomp() -> None:
    u = unit(container())
    assert u.caps == CONTAINER_DEFAULT and u.seccomp == "default"  # type: ignore[attr-defined]
    plain = unit('[exec]\ncommand = ["/bin/sh"]\n')
    assert plain.caps is None and plain.seccomp == "unconfined"  # type: ignore[attr-defined]


def test_keys_are_parsed() -> None:
    u = unit(container('cap_add = ["cap_net_raw"]\ncap_drop = ["CHOWN"]\nseccomp = "profiles/strict.json"'))
    assert u.exec.cap_add == ("NET_RAW",) and u.exec.cap_drop == ("CHOWN",)  # type: ignore[attr-defined]
    assert u.exec.seccomp == "/etc/supd/units/profiles/strict.json"  # type: ignore[attr-defined]
    assert u.caps == (CONTAINER_DEFAULT | {13}) - {0}  # type: ignore[attr-defined]
    assert unit(container('seccomp = "unconfined"')).seccomp == "unconfined"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('cap_add = ["NET_RAW", "CAP_FLY"]',
         '/etc/supd/units/web.toml: [exec].cap_add[1]: expected capability names like "NET_RAW" or "CAP_NET_RAW", '
         'or "ALL", got "CAP_FLY"'),
        ('cap_drop = "NET_RAW"', '[exec].cap_drop: expected a list of capability names'),
        ('cap_add = ["NET_RAW"]\ncap_drop = ["net_raw"]', "[exec].cap_drop: expected no capability also in cap_add (NET_RAW is in both)"),
        ('seccomp = ""', '[exec].seccomp: expected "default", "unconfined" or the path of a docker/OCI seccomp JSON profile, got ""'),
        ("seccomp = true", "[exec].seccomp: expected"),
    ],
)  # fmt: skip
def test_bad_keys_name_file_key_and_value(extra: str, message: str) -> None:
    with pytest.raises(UnitFileError) as info:
        unit(container(extra))
    assert message in str(info.value)


def write_unit(tmp_path: Path, seccomp: str, profile: object) -> Path:
    (tmp_path / "p.json").write_text(profile if isinstance(profile, str) else json.dumps(profile))
    file = tmp_path / "web.toml"
    file.write_text(container(f'seccomp = "{seccomp}"'))
    return file


def test_load_unit_checks_the_profile_file(tmp_path: Path) -> None:
    good = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "listmount"], "action": "SCMP_ACT_ALLOW"}]}
    assert load_unit(write_unit(tmp_path, "p.json", good)).exec.seccomp == str(tmp_path / "p.json")
    bad = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "io_uring_setpu"], "action": "SCMP_ACT_ALLOW"}]}
    with pytest.raises(UnitFileError) as info:
        load_unit(write_unit(tmp_path, "p.json", bad))
    text = str(info.value)
    assert text.startswith(f"{tmp_path}/web.toml: [exec].seccomp: expected a docker/OCI seccomp JSON profile")
    assert "unknown syscall 'io_uring_setpu'" in text and f"{tmp_path}/p.json" in text
    with pytest.raises(UnitFileError, match=r"\[exec\].seccomp: .*not valid JSON"):
        load_unit(write_unit(tmp_path, "p.json", "{nope"))
    with pytest.raises(UnitFileError, match=r"\[exec\].seccomp: .*No such file"):
        load_unit(write_unit(tmp_path, "missing.json", "{}"))


def test_spawn_spec_carries_caps_filter_and_ping_range() -> None:
    u = unit(container('cap_add = ["NET_RAW"]', 'network = "none"'))
    spec = build_spawn_spec(u, PLAN, init_path="/tini", seccomp=b"\x06\x00\x00\x00\x00\x00\xff\x7f")  # type: ignore[arg-type]
    assert spec.caps == tuple(sorted(CONTAINER_DEFAULT | {13})) and spec.no_new_privs
    assert spec.container is not None and spec.container.sysctls == (("net.ipv4.ping_group_range", "0 2147483647"),)
    assert SpawnSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    host_net = build_spawn_spec(unit(container(rootfs_extra='network = "host"')), PLAN)  # type: ignore[arg-type]
    assert host_net.container is not None and host_net.container.sysctls == () and host_net.seccomp is None
    bridged = build_spawn_spec(unit(container()), PLAN)  # type: ignore[arg-type]  # the default: bridge
    assert bridged.container is not None and bridged.container.network == "private"
    assert bridged.container.sysctls == (("net.ipv4.ping_group_range", "0 2147483647"),)


def test_plain_units_opt_in() -> None:
    plain = unit('[exec]\ncommand = ["/bin/sh"]\n')
    spec = build_spawn_spec(plain, None)  # type: ignore[arg-type]
    assert spec.caps is None and spec.seccomp is None and not spec.no_new_privs
    dropped = unit('[exec]\ncommand = ["/bin/sh"]\ncap_drop = ["SYS_ADMIN"]\n')
    spec = build_spawn_spec(dropped, None, seccomp=b"\x00" * 8)  # type: ignore[arg-type]
    assert spec.caps == tuple(sorted(ALL_CAPS - {21})) and spec.no_new_privs  # seccomp wants no_new_privs


def test_exec_and_health_specs_get_the_units_set_and_filter() -> None:
    u = unit(container('cap_drop = ["ALL"]\ncap_add = ["KILL"]'))
    spec = build_exec_spec(u, 7, (), ["id"], user=None, env={}, cwd=None, seccomp=b"\x00" * 8)  # type: ignore[arg-type]
    assert spec.caps == (CAPABILITIES["KILL"],) and spec.seccomp == b"\x00" * 8
    plain = build_exec_spec(unit('[exec]\ncommand = ["/bin/sh"]\n'), 7, (), ["id"], user=None, env={}, cwd=None)  # type: ignore[arg-type]
    assert plain.caps == tuple(sorted(CONTAINER_DEFAULT))  # into a plain unit: the container default, as before


def test_the_cache_compiles_once_per_profile_and_caps(tmp_path: Path) -> None:
    cache = FilterCache()
    u = unit(container())
    first = cache.for_unit(u)  # type: ignore[arg-type]
    assert first is not None and len(first) % 8 == 0
    start = time.perf_counter()
    for _ in range(1000):
        assert cache.for_unit(u) is first  # type: ignore[arg-type]
    per_start = (time.perf_counter() - start) / 1000
    assert per_start < 1e-4, per_start  # well below a millisecond once cached
    other = cache.for_unit(unit(container('cap_add = ["SYS_ADMIN"]')))  # type: ignore[arg-type]
    assert other != first
    assert cache.for_unit(unit(container('seccomp = "unconfined"'))) is None  # type: ignore[arg-type]


def test_the_cache_rereads_an_edited_profile_and_names_its_errors(tmp_path: Path) -> None:
    cache = FilterCache()
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    u = unit(container(f'seccomp = "{profile}"'), tmp_path / "web.toml")
    first = cache.for_unit(u)  # type: ignore[arg-type]
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}))
    assert cache.for_unit(u) != first  # type: ignore[arg-type]
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdri"], "action": "SCMP_ACT_ERRNO"}]}))
    with pytest.raises(SeccompError) as info:
        cache.for_unit(u)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{tmp_path}/web.toml: [exec].seccomp: {profile}: unknown syscall 'mkdri'")


def test_without_libseccomp_a_start_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor.seccomp import libseccomp

    monkeypatch.setattr(libseccomp, "SONAME", "libseccomp-supd-test-absent.so.9")
    monkeypatch.setattr(libseccomp, "_lib", None)
    with pytest.raises(SeccompError) as info:
        FilterCache().for_unit(unit(container()))  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("/etc/supd/units/web.toml: [exec].seccomp = 'default': seccomp: cannot load")
    assert "install libseccomp2" in message
    # a unit that needs no filter still starts
    assert FilterCache().for_unit(unit(container('seccomp = "unconfined"'))) is None  # type: ignore[arg-type]
