"""Unit → SpawnSpec translation and spawn-error wording (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.daemon.spawnspec import build_exec_spec, build_spawn_spec, describe_spawn_error, unit_environment
from supervisor.units.parse import parse_unit


def unit(text: dict) -> object:
    return parse_unit("web", text, Path("/etc/supd/units/web.toml"))


def test_plain_unit_spec_has_env_path_and_no_container() -> None:
    u = unit({"exec": {"command": ["/bin/sleep", "1"], "environment": {"TZ": "UTC"}, "user": "nobody"}})
    spec = build_spawn_spec(u, None)
    env = dict(spec.env)
    assert env["TZ"] == "UTC" and env["PATH"].startswith("/usr/local/sbin") and env["SUPD_UNIT"] == "web"
    assert spec.container is None and spec.user == "nobody" and not spec.no_new_privs


def test_container_spec_gets_init_hostname_binds_and_no_new_privs() -> None:
    u = unit(
        {
            "exec": {"command": ["/bin/httpd"]},
            "rootfs": {"layers": ["/l"], "init": True, "binds": [{"source": "/srv", "target": "/www", "readonly": True}]},
        }
    )
    plan = {"lowerdirs": ["/l"], "upperdir": "/u", "workdir": "/w", "target": "/t", "readonly": False, "chdir": None}
    spec = build_spawn_spec(u, plan, init_path="/usr/bin/tini-static")
    assert spec.container is not None and spec.no_new_privs
    assert spec.container.init == "/usr/bin/tini-static"
    assert spec.container.hostname == "web"
    assert [(b.source, b.target, b.readonly) for b in spec.container.binds] == [("/srv", "/www", True)]
    assert dict(unit_environment(u))["container"] == "supd"


def test_userns_auto_carries_the_units_ids_and_needs_them() -> None:
    from supervisor.policy.idranges import IdMapping

    u = unit({"exec": {"command": ["/bin/sh"]}, "rootfs": {"layers": ["/l"], "userns": "auto"}})
    plan = {"lowerdirs": ["/l"], "upperdir": "/u", "workdir": "/w", "target": "/t", "readonly": False, "chdir": None}
    spec = build_spawn_spec(u, plan, userns=IdMapping(100000, 300000))
    assert spec.container is not None and spec.container.userns is not None
    assert (spec.container.userns.uid, spec.container.userns.gid, spec.container.userns.count) == (100000, 300000, 65536)
    with pytest.raises(ValueError, match=r"web.toml: \[rootfs\].userns: no id range was allocated"):
        build_spawn_spec(u, plan)
    host = unit({"exec": {"command": ["/bin/sh"]}, "rootfs": {"layers": ["/l"]}})
    assert build_spawn_spec(host, plan, userns=IdMapping(100000, 300000)).container.userns is None  # type: ignore[union-attr]
    assert "[rootfs].userns" in describe_spawn_error(u, "userns mount /l id-mapped: Invalid argument")


def test_exec_spec_joins_the_main_pid_and_its_cgroup() -> None:
    u = unit({"exec": {"command": ["/bin/sh"], "user": "app"}})
    spec = build_exec_spec(u, 42, ("/sys/fs/cgroup/x/cgroup.procs",), ["id"], user=None, env={"A": "1"}, cwd=None)
    assert spec.join is not None and spec.join.pid == 42
    assert spec.user == "app" and dict(spec.env)["A"] == "1"


def test_spawn_errors_name_the_file_and_key() -> None:
    u = unit({"exec": {"command": ["/bin/x"]}})
    assert describe_spawn_error(u, "exec /bin/x: No such file or directory") == (
        "/etc/supd/units/web.toml: [exec].command: exec /bin/x: No such file or directory"
    )
    assert "[exec].user" in describe_spawn_error(u, 'user "bob" not in /etc/passwd')
    assert "[rootfs].binds" in describe_spawn_error(u, "bind /srv: No such file or directory")
    assert describe_spawn_error(u, "something odd") == "/etc/supd/units/web.toml: something odd"
    assert "[rootfs].tmpfs: tmpfs /run:" in describe_spawn_error(u, "tmpfs /run: /run: Not a directory")
    # supd's own /dev tmpfs is the image's problem, not the unit's tmpfs list
    assert "[rootfs]: mount tmpfs on /dev" in describe_spawn_error(u, "mount tmpfs on /dev: Permission denied")


def test_container_spec_carries_the_etc_files_and_their_errors_point_at_rootfs() -> None:
    u = unit({"exec": {"command": ["/bin/sh"]}, "rootfs": {"layers": ["/l"], "hostname": "box"}})
    plan = {"lowerdirs": ["/l"], "upperdir": "/u", "workdir": "/w", "target": "/t", "readonly": False, "chdir": None}
    files = {"/etc/resolv.conf": "/run/supd/units/web/etc/resolv.conf", "/etc/hosts": "/run/supd/units/web/etc/hosts"}
    spec = build_spawn_spec(u, plan, etc_files=files)
    assert spec.container is not None
    assert spec.container.etc_files == (
        ("/etc/hosts", "/run/supd/units/web/etc/hosts"),
        ("/etc/resolv.conf", "/run/supd/units/web/etc/resolv.conf"),
    )
    assert build_spawn_spec(u, plan).container.etc_files == ()  # type: ignore[union-attr]
    message = "etc /etc/hosts: /etc/hosts is not a regular file in the image"
    assert describe_spawn_error(u, message) == f"/etc/supd/units/web.toml: [rootfs]: {message}"
