"""`[rootfs].devices`: parsing (pure), resolving on the host (stat only: no
root needed), and what reaches the scope and the spawner."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from supervisor.cgroups.devices import DOCKER_DEFAULT, rule
from supervisor.cgroups.driver import CgroupError, ScopeSpec
from supervisor.cgroups.systemd import DEVICES_MIN_VERSION, device_properties
from supervisor.daemon.spawnspec import build_spawn_spec, describe_spawn_error
from supervisor.rootfs import hostdev
from supervisor.rootfs.errors import RootfsError
from supervisor.runtime.spec import DeviceNode, SpawnSpec, SpecError
from supervisor.units.model import DeviceSpec
from supervisor.units.parse import UnitFileError, parse_unit

FILE = Path("/srv/units/web.toml")
BASE = '[exec]\ncommand = ["/bin/true"]\n[rootfs]\nlayers = ["/l"]\n'


def parse(devices: str) -> tuple[DeviceSpec, ...]:
    unit = parse_unit("web", tomllib.loads(BASE + f"devices = {devices}\n"), FILE)
    assert unit.rootfs is not None
    return unit.rootfs.devices


def test_entries_and_access() -> None:
    assert parse('["/dev/fuse", "/dev/net/tun:rw", "/dev/char/10:200", "/dev/char/10:200x:mwr"]') == (
        DeviceSpec("/dev/fuse", "rwm"),
        DeviceSpec("/dev/net/tun", "rw"),
        DeviceSpec("/dev/char/10:200", "rwm"),
        DeviceSpec("/dev/char/10:200x", "rwm"),
    )
    assert parse("[]") == ()
    unit = parse_unit("web", tomllib.loads(BASE), FILE)
    assert unit.rootfs is not None and unit.rootfs.devices == ()


@pytest.mark.parametrize(
    ("devices", "key", "expected"),
    [
        ('"/dev/fuse"', "[rootfs].devices", "a list of device paths"),
        ("[1]", "[rootfs].devices[0]", "a device path under /dev"),
        ('["fuse"]', "[rootfs].devices[0]", "a device path under /dev"),
        ('["/etc/passwd"]', "[rootfs].devices[0]", "a device path under /dev"),
        ('["/dev"]', "[rootfs].devices[0]", "a device path under /dev"),
        ('["/dev/../etc/x"]', "[rootfs].devices[0]", "a device path under /dev"),
        ('["/dev/fuse:rr"]', "[rootfs].devices[0]", "a device path under /dev"),
        ('["/dev/fuse", "/dev/null"]', "[rootfs].devices[1]", "other than /dev/null (supd makes that one)"),
        ('["/dev/pts/0"]', "[rootfs].devices[0]", "other than /dev/pts"),
        ('["/dev/fuse", "/dev/fuse:r"]', "[rootfs].devices[1]", "not listed by an earlier entry"),
    ],
)
def test_bad_entries(devices: str, key: str, expected: str) -> None:
    with pytest.raises(UnitFileError) as info:
        parse(devices)
    assert info.value.key == key
    assert expected in str(info.value) and str(FILE) in str(info.value)


def container(devices: str) -> object:
    return parse_unit("web", tomllib.loads(BASE + f"devices = {devices}\n"), FILE)


def test_resolved_on_the_host(tmp_path: Path) -> None:
    unit = container('["/dev/a:rw", "/dev/b"]')
    unit = _with_device_path(_with_device_path(unit, 0, "/dev/null"), 1, "/dev/zero")  # supd's own names, on the host
    found = hostdev.resolve(unit)  # type: ignore[arg-type]
    null = os.stat("/dev/null")
    assert found[0].node == DeviceNode("/dev/null", "c", 1, 3, null.st_mode & 0o7777, null.st_uid, null.st_gid)
    assert found[0].rule() == rule("c", 1, 3, "rw")
    assert found[1].rule() == rule("c", 1, 5, "rwm")


@pytest.mark.parametrize(
    ("entry", "needles"),
    [
        ("/dev/supdtest-no-such-device", ['"/dev/supdtest-no-such-device" does not exist on this host']),
        ("/dev/shm-file", ["is a regular file on this host", "expected a character or block device"]),
    ],
)
def test_not_a_device_on_the_host(entry: str, needles: list[str], tmp_path: Path) -> None:
    unit = container(f'["/dev/fuse", "{entry}"]')
    # the second entry names a host path that is not a device: point it at a regular file
    if entry == "/dev/shm-file":
        regular = tmp_path / "plain"
        regular.write_text("x")
        unit = _with_device_path(unit, 1, str(regular))
    if not os.path.exists("/dev/fuse"):
        unit = _with_device_path(unit, 0, "/dev/null")
    with pytest.raises(RootfsError) as info:
        hostdev.resolve(unit)  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith(f"{FILE}: [rootfs].devices[1]: "), text
    for needle in needles:
        assert needle in text, text


def _with_device_path(unit: object, index: int, path: str) -> object:
    from dataclasses import replace

    rootfs = unit.rootfs  # type: ignore[attr-defined]
    devices = list(rootfs.devices)
    devices[index] = DeviceSpec(path, devices[index].access)
    return replace(unit, rootfs=replace(rootfs, devices=tuple(devices)))  # type: ignore[type-var]


def test_scope_gets_the_policy_plain_units_none() -> None:
    unit = container('["/dev/fuse"]')
    scope = ScopeSpec.for_unit(unit, [rule("c", 10, 229, "rw")])  # type: ignore[arg-type]
    assert scope.devices is not None
    assert scope.devices.allow[: len(DOCKER_DEFAULT)] == DOCKER_DEFAULT
    assert scope.devices.allow[-1] == rule("c", 10, 229, "rw")
    plain = parse_unit("p", tomllib.loads('[exec]\ncommand = ["/bin/true"]\n'), FILE)
    assert ScopeSpec.for_unit(plain).devices is None


def test_spawn_spec_carries_the_nodes() -> None:
    unit = container('["/dev/net/tun"]')
    node = DeviceNode("/dev/net/tun", "c", 10, 200, 0o666)
    plan = {"lowerdirs": ["/l"], "target": "/run/x/rootfs"}
    spec = build_spawn_spec(unit, plan, devices=(node,))  # type: ignore[arg-type]
    assert spec.container is not None and spec.container.devices == (node,)
    assert SpawnSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.to_json()["container"]["devices"] == [["/dev/net/tun", "c", 10, 200, 0o666, 0, 0]]
    message = describe_spawn_error(unit, "device /dev/net/tun: File exists")  # type: ignore[arg-type]
    assert message == f"{FILE}: [rootfs].devices: device /dev/net/tun: File exists"


def test_device_node_is_checked() -> None:
    with pytest.raises(SpecError):
        DeviceNode("/etc/x", "c", 1, 1, 0o600)
    with pytest.raises(SpecError):
        DeviceNode("/dev/x", "p", 1, 1, 0o600)


def test_systemd_device_properties() -> None:
    unit = container("[]")
    scope = ScopeSpec.for_unit(unit)  # type: ignore[arg-type]
    assert scope.devices is not None
    props = dict(device_properties("web", scope.devices, 252))
    assert props["DevicePolicy"] == ("s", "closed")
    sig, entries = props["DeviceAllow"]
    assert sig == "a(ss)" and ("char-*", "m") in entries and ("char-136", "rwm") in entries
    with pytest.raises(CgroupError, match=f"systemd >= {DEVICES_MIN_VERSION}"):
        device_properties("web", scope.devices, 239)
