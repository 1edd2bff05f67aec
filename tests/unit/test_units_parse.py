"""Unit files: the DESIGN.md example parses to the expected model; every key
is validated, and every error names the file, the key path, what was expected
and what was found."""

from __future__ import annotations

import os
import signal
import time
import tomllib
from pathlib import Path

import pytest

from supervisor.network.ports import PortMapping
from supervisor.units.model import (
    BindSpec,
    ExecSpec,
    FreezeSpec,
    HealthSpec,
    Resources,
    RestartSpec,
    RootfsSpec,
    StopSpec,
    UnitSection,
)
from supervisor.units.parse import MAX_UNIT_FILE_SIZE, UnitFileError, load_unit, parse_unit, render_value

FILE = Path("/srv/units/web.toml")
MINIMAL = '[exec]\ncommand = ["/bin/true"]\n'

DESIGN_EXAMPLE = """
[unit]
description = "busybox httpd"
slice = "web"
after = ["db"]
requires = ["db"]
enabled = true
priority = 0

[exec]
command = ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
environment = { TZ = "UTC", LANG = "C" }
working_directory = "/"
user = "nobody"

[rootfs]
layers = ["/var/lib/supd/layers/busybox", "layers/www"]
writable = "persistent"
hostname = "web"
network = "bridge"
ports = ["8080:80", "127.0.0.1:5353:53/udp"]
binds = [{ source = "/srv/www", target = "/www", readonly = true }]
init = true

[resources]
memory_max = "64M"
memory_high = "48M"
cpu_weight = 100
cpu_quota = "50%"
pids_max = 64
io_weight = 100
cpuset = "0"

[restart]
policy = "on-failure"
delay = "100ms"
max_delay = "30s"
reset_after = "60s"
limit_burst = 5
limit_interval = "60s"

[stop]
signal = "SIGTERM"
timeout = "10s"

[health]
command = ["/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
interval = "5s"
timeout = "2s"
retries = 3
start_period = "10s"
on_failure = "restart"

[freeze]
near_memory_max = 0.95
on_host_pressure = { memory = 40.0 }
max_frozen = "10m"
"""


def parse(text: str, name: str = "web", file: Path = FILE):  # type: ignore[no-untyped-def]
    return parse_unit(name, tomllib.loads(text), file)


def error_for(text: str) -> UnitFileError:
    with pytest.raises(UnitFileError) as info:
        parse(text)
    return info.value


def test_design_example_parses_to_the_model() -> None:
    unit = parse(DESIGN_EXAMPLE)
    assert unit.name == "web" and unit.file == FILE
    assert unit.unit == UnitSection(
        description="busybox httpd", slice="web", after=("db",), requires=("db",), enabled=True, priority=0
    )
    assert unit.exec == ExecSpec(
        command=("/bin/httpd", "-f", "-p", "8080", "-h", "/www"),
        environment=(("LANG", "C"), ("TZ", "UTC")),
        working_directory="/",
        user="nobody",
    )
    assert unit.rootfs == RootfsSpec(
        layers=(Path("/var/lib/supd/layers/busybox"), Path("/srv/units/layers/www")),
        image=None,
        writable="persistent",
        hostname="web",
        network="bridge",
        ports=(PortMapping(8080, 80), PortMapping(5353, 53, "udp", "127.0.0.1")),
        binds=(BindSpec(source=Path("/srv/www"), target="/www", readonly=True),),
        init=True,
    )
    assert unit.resources == Resources(
        memory_max=64 << 20, memory_high=48 << 20, cpu_weight=100, cpu_quota=0.5, pids_max=64, io_weight=100, cpuset="0"
    )
    assert unit.restart == RestartSpec("on-failure", 0.1, 30.0, 60.0, 5, 60.0)
    assert unit.stop == StopSpec(signal=int(signal.SIGTERM), timeout=10.0)
    assert unit.health == HealthSpec(
        command=("/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"),
        interval=5.0, timeout=2.0, retries=3, start_period=10.0, on_failure="restart",
    )  # fmt: skip
    assert unit.freeze == FreezeSpec(near_memory_max=0.95, on_host_pressure=(("memory", 40.0),), max_frozen=600.0)
    assert unit.slice_name == "supd-web.slice"


def test_minimal_unit_gets_the_model_defaults() -> None:
    unit = parse(MINIMAL)
    assert unit.exec == ExecSpec(command=("/bin/true",))
    assert unit.unit == UnitSection()
    assert unit.rootfs is None and unit.health is None and unit.freeze is None
    assert unit.resources == Resources() and unit.restart == RestartSpec() and unit.stop == StopSpec()


def test_same_file_parses_equal_and_resource_only_change_is_detected() -> None:
    a = parse(DESIGN_EXAMPLE)
    assert parse(DESIGN_EXAMPLE) == a
    b = parse(DESIGN_EXAMPLE.replace('memory_high = "48M"', 'memory_high = "32M"'))
    assert a.differs_only_in_resources(b)
    c = parse(DESIGN_EXAMPLE.replace('hostname = "web"', 'hostname = "web2"'))
    assert not a.differs_only_in_resources(c)


def test_relative_paths_resolve_against_the_unit_folder_without_touching_the_filesystem() -> None:
    unit = parse(
        MINIMAL
        + '[rootfs]\nlayers = ["../layers/base", "./www"]\n'
        + 'binds = [{ source = "data", target = "/data/" }]\n'
    )
    assert unit.rootfs is not None
    assert unit.rootfs.layers == (Path("/srv/layers/base"), Path("/srv/units/www"))
    assert unit.rootfs.binds == (BindSpec(source=Path("/srv/units/data"), target="/data"),)


def test_relative_unit_file_path_gives_absolute_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    unit = parse(MINIMAL + '[rootfs]\nlayers = ["layers/a"]\n', file=Path("units/web.toml"))
    assert unit.rootfs is not None and unit.rootfs.layers == (tmp_path / "units/layers/a",)


def test_image_dir_is_resolved_and_tag_kept() -> None:
    unit = parse(MINIMAL + '[rootfs]\nimage = "./images/alpine:3.20"\nwritable = "ephemeral"\n')
    assert unit.rootfs is not None
    assert unit.rootfs.image == "/srv/units/images/alpine:3.20" and unit.rootfs.layers == ()
    assert unit.rootfs.writable == "ephemeral"
    assert unit.rootfs.pull == "missing"


def test_image_that_names_no_layout_is_a_registry_reference() -> None:
    unit = parse(MINIMAL + '[rootfs]\nimage = "images/alpine:3.20"\npull = "never"\n')
    assert unit.rootfs is not None
    assert unit.rootfs.image == "docker://docker.io/images/alpine:3.20"
    assert unit.rootfs.pull == "never"
    unit = parse(MINIMAL + '[rootfs]\nimage = "docker-archive:saved.tar"\n')
    assert unit.rootfs is not None and unit.rootfs.image == "docker-archive:/srv/units/saved.tar"


def test_userns_is_host_unless_auto() -> None:
    unit = parse(MINIMAL + '[rootfs]\nlayers = ["/l"]\n')
    assert unit.rootfs is not None and unit.rootfs.userns == "host"
    unit = parse(MINIMAL + '[rootfs]\nlayers = ["/l"]\nuserns = "auto"\n')
    assert unit.rootfs is not None and unit.rootfs.userns == "auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL + "[restart]\ndelay = 12\n",
            'units/web.toml: [restart].delay: expected a duration like "500ms" or "10s", got 12',
        ),
        (
            '[exec]\ncomand = ["/bin/true"]\n',
            "units/web.toml: [exec].comand: unknown key, expected one of: command, environment, working_directory, user, cap_add, cap_drop, seccomp, entrypoint, log_driver, type",
        ),
        (
            MINIMAL + "[servce]\nx = 1\n",
            "units/web.toml: [servce]: unknown section, expected one of: unit, exec, rootfs, resources, restart, stop, health, freeze",
        ),
        ("[unit]\n", "units/web.toml: [exec]: expected a table with at least command, got nothing"),
        ("[exec]\ncommand = []\n", "units/web.toml: [exec].command: expected a non-empty list of strings, the program first, got []"),
        ("[exec]\n", "units/web.toml: [exec].command: expected a non-empty list of strings, the program first, got nothing"),
        ('exec = "x"\n', 'units/web.toml: [exec]: expected a table, got "x"'),
        (
            '[exec]\ncommand = ["/bin/true"]\nenvironment = { TZ = 5 }\n',
            "units/web.toml: [exec].environment.TZ: expected a string, got 5",
        ),
        (
            MINIMAL + '[rootfs]\nlayers = ["a"]\nbinds = [{ source = "/x", target = "/x" }, { target = "/y" }]\n',
            "units/web.toml: [rootfs].binds[1].source: expected a non-empty path (absolute, or relative to the unit file's folder), got nothing",
        ),
    ],
)
def test_error_messages_exactly(text: str, message: str) -> None:
    with pytest.raises(UnitFileError) as info:
        parse_unit("web", tomllib.loads(text), Path("units/web.toml"))
    assert str(info.value) == message


# (toml added to a valid minimal unit, key path, text in `expected`, got)
KEY_ERRORS = [
    # [unit]
    ('[unit]\ndescription = 5', "[unit].description", "a string", 5),
    ('[unit]\nslice = "a--b"', "[unit].slice", "slice name", "a--b"),
    ('[unit]\nslice = "-a"', "[unit].slice", "slice name", "-a"),
    ('[unit]\nafter = "db"', "[unit].after", "a list of unit names", "db"),
    ('[unit]\nafter = ["Db"]', "[unit].after[0]", "unit name", "Db"),
    ('[unit]\nrequires = ["db", "a..b"]', "[unit].requires[1]", "unit name", "a..b"),
    ('[unit]\nrequires = ["web"]', "[unit].requires[0]", "another unit", "web"),
    ('[unit]\nafter = ["web"]', "[unit].after[0]", "another unit", "web"),
    ('[unit]\nenabled = "yes"', "[unit].enabled", "true or false", "yes"),
    ('[unit]\npriority = 1.5', "[unit].priority", "an integer", 1.5),
    ('[unit]\npriority = true', "[unit].priority", "an integer", True),
    ('[unit]\nwanted_by = "x"', "[unit].wanted_by", "description, slice", "x"),
    # [exec]
    ('[exec]\ncommand = "/bin/true"', "[exec].command", "non-empty list", "/bin/true"),
    ('[exec]\ncommand = ["/bin/true", 1]', "[exec].command[1]", "a string without NUL bytes", 1),
    ('[exec]\ncommand = ["/bin/true", "a\\u0000b"]', "[exec].command[1]", "a string without NUL bytes", "a\0b"),
    ('[exec]\ncommand = ["", "x"]', "[exec].command[0]", "a program name", ""),
    ('[exec]\ncommand = ["/bin/true"]\nentrypoint = "/bin/sh"', "[exec].entrypoint", "list of strings", "/bin/sh"),
    ('[exec]\ncommand = ["/bin/true"]\nentrypoint = ["/bin/sh", 2]', "[exec].entrypoint[1]", "a string without NUL bytes", 2),
    ('[exec]\nentrypoint = []', "[exec].command", "non-empty list", None),
    ('[exec]\ncommand = ["/bin/true"]\ntype = "forking"', "[exec].type", '"simple", "oneshot"', "forking"),
    ('[exec]\ncommand = ["/bin/true"]\ntype = "oneshot"\n[restart]\npolicy = "always"', "[restart].policy",
     '"no" or "on-failure" or "on-abnormal" ([exec].type = "oneshot" runs once, to its end)', "always"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = "/tmp"', "[rootfs].tmpfs", "a list like", "/tmp"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/run", "tmp"]', "[rootfs].tmpfs[1]", "the path: an absolute path", "tmp"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/"]', "[rootfs].tmpfs[0]", "not on / itself", "/"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/t:size=lots"]', "[rootfs].tmpfs[0]", "size:", "/t:size=lots"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/t:size=0"]', "[rootfs].tmpfs[0]", "size above 0", "/t:size=0"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/t:mode=999"]', "[rootfs].tmpfs[0]", "mode: octal", "/t:mode=999"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/t:uid=0"]', "[rootfs].tmpfs[0]", "unknown option 'uid=0'", "/t:uid=0"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/t", "/t/"]', "[rootfs].tmpfs[1]", "not mounted by an earlier", "/t/"),
    ('[rootfs]\nlayers = ["/l"]\ntmpfs = ["/srv"]\nbinds = [{source = "/s", target = "/srv"}]', "[rootfs].tmpfs[0]", "or a bind", "/srv"),
    ('[exec]\ncommand = ["/bin/true"]\nenvironment = ["TZ=UTC"]', "[exec].environment", "a table", ["TZ=UTC"]),
    ('[exec]\ncommand = ["/bin/true"]\nenvironment = { "A B" = "x" }', '[exec].environment."A B"', "environment variable name", "A B"),
    ('[exec]\ncommand = ["/bin/true"]\nworking_directory = "www"', "[exec].working_directory", "absolute path", "www"),
    ('[exec]\ncommand = ["/bin/true"]\nworking_directory = "/a/../b"', "[exec].working_directory", "absolute path", "/a/../b"),
    ('[exec]\ncommand = ["/bin/true"]\nuser = "bob:staff"', "[exec].user", "user name", "bob:staff"),
    ('[exec]\ncommand = ["/bin/true"]\nuser = 1000', "[exec].user", "user name", 1000),
    # [rootfs]
    ('[rootfs]\nwritable = "yes"', "[rootfs]", "layers or image", None),
    ('[rootfs]\nlayers = []', "[rootfs].layers", "at least one layer", []),
    ('[rootfs]\nlayers = "a"', "[rootfs].layers", "a list of layer directories", "a"),
    ('[rootfs]\nlayers = ["a", ""]', "[rootfs].layers[1]", "non-empty path", ""),
    ('[rootfs]\nlayers = ["a"]\nimage = "i:1"', "[rootfs].image", "not both", "i:1"),
    ('[rootfs]\nimage = "Alpine"', "[rootfs].image", 'image reference "Alpine": repository "Alpine" must be lowercase', "Alpine"),
    ('[rootfs]\nimage = "dir:"', "[rootfs].image", "OCI layout and tag", "dir:"),
    ('[rootfs]\nimage = "a@sha256:12"', "[rootfs].image", "a sha256 digest has 64 hex digits", "a@sha256:12"),
    ('[rootfs]\nimage = "a"\npull = "sometimes"', "[rootfs].pull", "one of", "sometimes"),
    ('[rootfs]\nlayers = ["a"]\nwritable = "rw"', "[rootfs].writable", '"persistent", "ephemeral", "readonly"', "rw"),
    ('[rootfs]\nlayers = ["a"]\nnetwork = "my net"', "[rootfs].network", '"bridge", "host", "none" or the name', "my net"),
    ('[rootfs]\nlayers = ["a"]\nnetwork = 1', "[rootfs].network", '"bridge", "host", "none" or the name', 1),
    ('[rootfs]\nlayers = ["a"]\nports = "8080:80"', "[rootfs].ports", "a list of port mappings", "8080:80"),
    ('[rootfs]\nlayers = ["a"]\nports = ["8080"]', "[rootfs].ports[0]", 'a port mapping like "8080:80"', "8080"),
    ('[rootfs]\nlayers = ["a"]\nports = ["80:80", "x:80"]', "[rootfs].ports[1]", "is not a number", "x:80"),
    ('[rootfs]\nlayers = ["a"]\nports = ["70000:80"]', "[rootfs].ports[0]", "host port in 1..65535", "70000:80"),
    ('[rootfs]\nlayers = ["a"]\nports = ["8080:0"]', "[rootfs].ports[0]", "container port in 1..65535", "8080:0"),
    ('[rootfs]\nlayers = ["a"]\nports = ["8080:80/icmp"]', "[rootfs].ports[0]", "tcp, udp or sctp", "8080:80/icmp"),
    ('[rootfs]\nlayers = ["a"]\nports = ["localhost:8080:80"]', "[rootfs].ports[0]", "not an IPv4 address", "localhost:8080:80"),
    ('[rootfs]\nlayers = ["a"]\nports = ["8080:80", "127.0.0.1:8080:81"]', "[rootfs].ports[1]", "not published already", "127.0.0.1:8080:81"),
    ('[rootfs]\nlayers = ["a"]\nnetwork = "host"\nports = ["8080:80"]', "[rootfs].ports", "no ports with network", ["8080:80"]),
    ('[rootfs]\nlayers = ["a"]\nuserns = "keep-id"', "[rootfs].userns", '"host", "auto"', "keep-id"),
    ('[rootfs]\nlayers = ["a"]\nhostname = "my_host"', "[rootfs].hostname", "hostname", "my_host"),
    ('[rootfs]\nlayers = ["a"]\ninit = 1', "[rootfs].init", "true or false", 1),
    ('[rootfs]\nlayers = ["a"]\nbinds = { source = "/a", target = "/b" }', "[rootfs].binds", "a list of tables", {"source": "/a", "target": "/b"}),
    ('[rootfs]\nlayers = ["a"]\nbinds = ["/a:/b"]', "[rootfs].binds[0]", "a table", "/a:/b"),
    ('[rootfs]\nlayers = ["a"]\nbinds = [{ source = "/a", target = "b" }]', "[rootfs].binds[0].target", "absolute path", "b"),
    ('[rootfs]\nlayers = ["a"]\nbinds = [{ source = "/a", target = "/b", ro = true }]', "[rootfs].binds[0].ro", "source, target, readonly", True),
    ('[rootfs]\nlayers = ["a"]\nbinds = [{ source = "/a", target = "/b", readonly = "yes" }]', "[rootfs].binds[0].readonly", "true or false", "yes"),
    ('[rootfs]\nlayers = ["a"]\nbinds = [{ source = "/a", target = "/b" }, { source = "/c", target = "/b/" }]', "[rootfs].binds[1].target", "not bound by an earlier", "/b/"),
    # [resources]
    ('[resources]\nmemory_max = "64Q"', "[resources].memory_max", "a size like", "64Q"),
    ('[resources]\nmemory_max = -1', "[resources].memory_max", "a size like", -1),
    ('[resources]\nmemory_max = 0', "[resources].memory_max", "above 0", 0),
    ('[resources]\nmemory_max = "32M"\nmemory_high = "48M"', "[resources].memory_high", "at most memory_max (33554432 bytes)", "48M"),
    ('[resources]\ncpu_weight = 0', "[resources].cpu_weight", "1..10000", 0),
    ('[resources]\ncpu_weight = 10001', "[resources].cpu_weight", "1..10000", 10001),
    ('[resources]\ncpu_weight = "100"', "[resources].cpu_weight", "1..10000", "100"),
    ('[resources]\nio_weight = 0', "[resources].io_weight", "1..10000", 0),
    ('[resources]\ncpu_quota = 50', "[resources].cpu_quota", "percentage", 50),
    ('[resources]\ncpu_quota = "0%"', "[resources].cpu_quota", "percentage", "0%"),
    ('[resources]\npids_max = 0', "[resources].pids_max", "at least 1", 0),
    ('[resources]\npids_max = "lots"', "[resources].pids_max", "at least 1", "lots"),
    ('[resources]\ncpuset = "9-2"', "[resources].cpuset", "CPU list", "9-2"),
    ('[resources]\ncpuset = 0', "[resources].cpuset", "CPU list", 0),
    ('[resources]\nmemory = "1G"', "[resources].memory", "memory_max, memory_high", "1G"),
    # [restart]
    ('[restart]\npolicy = "sometimes"', "[restart].policy", '"no", "on-failure", "on-abnormal", "always"', "sometimes"),
    ('[restart]\npolicy = false', "[restart].policy", '"no"', False),
    ('[restart]\ndelay = "10"', "[restart].delay", "a duration like", "10"),
    ('[restart]\nmax_delay = "-1s"', "[restart].max_delay", "a duration like", "-1s"),
    ('[restart]\ndelay = "10s"\nmax_delay = "1s"', "[restart].max_delay", "at least delay", "1s"),
    ('[restart]\ndelay = "60s"', "[restart].delay", "at least delay", "60s"),
    ('[restart]\nlimit_burst = 0', "[restart].limit_burst", "1..10000", 0),
    ('[restart]\nlimit_interval = 60', "[restart].limit_interval", "a duration like", 60),
    # [stop]
    ('[stop]\nsignal = "SIGFOO"', "[stop].signal", "a signal like", "SIGFOO"),
    ('[stop]\ntimeout = "soon"', "[stop].timeout", "a duration like", "soon"),
    # [health]
    ('[health]\ninterval = "5s"', "[health].command", "non-empty list", None),
    ('[health]\ncommand = ["/bin/true"]\ninterval = "0s"', "[health].interval", "above 0", "0s"),
    ('[health]\ncommand = ["/bin/true"]\ntimeout = "0"', "[health].timeout", "above 0", "0"),
    ('[health]\ncommand = ["/bin/true"]\nretries = 0', "[health].retries", "1..1000", 0),
    ('[health]\ncommand = ["/bin/true"]\non_failure = "reboot"', "[health].on_failure", '"restart", "freeze", "stop", "none"', "reboot"),
    # [freeze]
    ('[freeze]\nnear_memory_max = 0.9', "[freeze].near_memory_max", "[resources].memory_max to be set", 0.9),
    ('[resources]\nmemory_max = "1G"\n[freeze]\nnear_memory_max = 1.5', "[freeze].near_memory_max", "(0, 1]", 1.5),
    ('[resources]\nmemory_max = "1G"\n[freeze]\nnear_memory_max = 0', "[freeze].near_memory_max", "(0, 1]", 0),
    ('[resources]\nmemory_max = "1G"\n[freeze]\nnear_memory_max = nan', "[freeze].near_memory_max", "(0, 1]", None),
    ('[freeze]\non_host_pressure = { disk = 40.0 }', "[freeze].on_host_pressure.disk", "memory, cpu, io", 40.0),
    ('[freeze]\non_host_pressure = { memory = 0 }', "[freeze].on_host_pressure.memory", "(0, 100]", 0),
    ('[freeze]\non_host_pressure = { cpu = 101 }', "[freeze].on_host_pressure.cpu", "(0, 100]", 101),
    ('[freeze]\non_host_pressure = { io = "40" }', "[freeze].on_host_pressure.io", "(0, 100]", "40"),
    ('[freeze]\non_host_pressure = 40', "[freeze].on_host_pressure", "a table like", 40),
    ('[freeze]\nmax_frozen = "0s"', "[freeze].max_frozen", "above 0", "0s"),
]


@pytest.mark.parametrize(("extra", "key", "expected", "got"), KEY_ERRORS, ids=[c[1] + ":" + repr(c[3]) for c in KEY_ERRORS])
def test_key_errors(extra: str, key: str, expected: str, got: object) -> None:
    text = extra + "\n" if extra.startswith("[exec]") else MINIMAL + extra + "\n"
    error = error_for(text)
    assert error.key == key, str(error)
    assert expected in error.expected, str(error)
    if got is not None:
        assert error.got == got
    assert str(error).startswith(f"{FILE}: {key}: ")


def test_exec_type_is_simple_unless_oneshot() -> None:
    assert parse(MINIMAL).exec.type == "simple" and not parse(MINIMAL).exec.oneshot
    unit = parse('[exec]\ncommand = ["/bin/true"]\ntype = "oneshot"\n[restart]\npolicy = "on-failure"\n')
    assert unit.exec.oneshot and unit.restart.policy == "on-failure"


def test_valid_variants() -> None:
    unit = parse(
        MINIMAL
        + '[unit]\nafter = ["db", "db"]\npriority = -5\n'
        + '[resources]\nmemory_max = 1048576\npids_max = "infinity"\ncpu_quota = "250%"\ncpuset = "3,0-1"\n'
        + '[stop]\nsignal = 9\n'
        + '[restart]\ndelay = "0"\npolicy = "always"\n'
        + '[freeze]\non_host_pressure = { cpu = 80, memory = 40.5 }\n'
    )
    assert unit.unit.after == ("db",) and unit.unit.priority == -5
    assert unit.resources == Resources(memory_max=1 << 20, cpu_quota=2.5, cpuset="0-1,3")
    assert unit.stop.signal == 9 and unit.restart.delay == 0.0
    assert unit.freeze == FreezeSpec(on_host_pressure=(("cpu", 80.0), ("memory", 40.5)))


def test_bad_name_is_a_file_level_error() -> None:
    with pytest.raises(UnitFileError) as info:
        parse(MINIMAL, name="a..b")
    assert info.value.key == ""
    assert str(info.value).startswith(f"{FILE}: expected the file name to be")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x", '"x"'), ('say "hi"', '"say \\"hi\\""'), (12, "12"), (1.5, "1.5"), (True, "true"),
        (float("inf"), "inf"), ([1, "a"], '[1, "a"]'), ({"a": 1}, "{ a = 1 }"), ({}, "{}"),
    ],
)  # fmt: skip
def test_got_is_rendered_toml_style(value: object, shown: str) -> None:
    assert render_value(value) == shown


def test_long_got_is_shortened() -> None:
    assert len(render_value("x" * 10_000)) <= 80
    assert len(render_value(list(range(10_000)))) <= 80


# --- load_unit: the file itself ---


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_unit_reads_a_file_and_names_the_unit_after_its_stem(tmp_path: Path) -> None:
    unit = load_unit(write(tmp_path / "my-app.v2.toml", MINIMAL))
    assert unit.name == "my-app.v2" and unit.file == tmp_path / "my-app.v2.toml"


@pytest.mark.parametrize("filename", ["a..b.toml", "..toml", "Web.toml", "-x.toml", "web.conf", "web"])
def test_load_unit_refuses_bad_file_names(tmp_path: Path, filename: str) -> None:
    path = write(tmp_path / filename, MINIMAL)
    with pytest.raises(UnitFileError) as info:
        load_unit(path)
    assert info.value.key == "" and str(info.value).startswith(f"{path}: expected ")


def test_load_unit_refuses_non_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "web.toml", "[exec\ncommand = 1\n")
    with pytest.raises(UnitFileError) as info:
        load_unit(path)
    assert info.value.key == ""
    assert str(info.value).startswith(f"{path}: expected valid TOML: ")
    assert "line 1" in str(info.value)


def test_load_unit_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "web.toml"
    path.write_bytes(b'[exec]\ncommand = ["\xff"]\n')
    with pytest.raises(UnitFileError, match="expected UTF-8 text, got an invalid byte at offset 19"):
        load_unit(path)


def test_load_unit_refuses_a_10_mb_file_quickly_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    with path.open("wb") as f:
        f.write(MINIMAL.encode())
        f.truncate(10 * 1024 * 1024)  # sparse: creating it costs nothing
    started = time.monotonic()
    with pytest.raises(UnitFileError) as info:
        load_unit(path)
    # The size in the message comes from fstat, i.e. before any read.
    assert str(info.value) == f"{path}: expected a file of at most {MAX_UNIT_FILE_SIZE} bytes, got {10 * 1024 * 1024} bytes"
    assert time.monotonic() - started < 1.0


def test_load_unit_accepts_a_file_of_exactly_the_cap(tmp_path: Path) -> None:
    body = MINIMAL + "#" * (MAX_UNIT_FILE_SIZE - len(MINIMAL) - 1) + "\n"
    assert load_unit(write(tmp_path / "web.toml", body)).name == "web"


def test_load_unit_on_a_symlink_loop_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.toml").symlink_to(tmp_path / "b.toml")
    (tmp_path / "b.toml").symlink_to(tmp_path / "a.toml")
    with pytest.raises(UnitFileError) as info:
        load_unit(tmp_path / "a.toml")
    assert str(info.value) == f"{tmp_path / 'a.toml'}: expected a readable file, got: Too many levels of symbolic links"


def test_load_unit_follows_a_plain_symlink(tmp_path: Path) -> None:
    write(tmp_path / "real.toml", MINIMAL)
    (tmp_path / "web.toml").symlink_to(tmp_path / "real.toml")
    assert load_unit(tmp_path / "web.toml").name == "web"


def test_load_unit_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnitFileError, match="expected a readable file, got: No such file or directory"):
        load_unit(tmp_path / "gone.toml")


def test_load_unit_on_a_directory(tmp_path: Path) -> None:
    (tmp_path / "web.toml").mkdir()
    with pytest.raises(UnitFileError, match="expected a regular file, got a directory"):
        load_unit(tmp_path / "web.toml")


def test_load_unit_on_a_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "web.toml")
    with pytest.raises(UnitFileError, match="expected a regular file, got a FIFO"):
        load_unit(tmp_path / "web.toml")


def test_load_unit_validation_errors_name_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "units").mkdir()
    write(tmp_path / "units/web.toml", MINIMAL + "[restart]\ndelay = 12\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnitFileError) as info:
        load_unit(Path("units/web.toml"))
    assert str(info.value) == 'units/web.toml: [restart].delay: expected a duration like "500ms" or "10s", got 12'


def test_empty_strings_are_arguments() -> None:
    unit = parse('[exec]\ncommand = ["redis-server", "--save", ""]\n')
    assert unit.exec.command == ("redis-server", "--save", "")


def test_entrypoint_is_kept_apart_from_the_command() -> None:
    unit = parse('[exec]\nentrypoint = ["/bin/sh", "-c"]\ncommand = ["echo hi"]\n')
    assert (unit.exec.entrypoint, unit.exec.command, unit.exec.argv) == (("/bin/sh", "-c"), ("echo hi",), ("/bin/sh", "-c", "echo hi"))
    assert parse(MINIMAL).exec.entrypoint is None


def test_an_image_unit_may_leave_exec_to_its_image() -> None:
    unit = parse('[rootfs]\nimage = "/srv/images/redis:7"\n')
    assert (unit.exec.command, unit.exec.entrypoint, unit.exec.working_directory, unit.stop.signal) == ((), None, None, None)
    assert parse('[exec]\nentrypoint = []\n[rootfs]\nimage = "/srv/images/redis:7"\n').exec.entrypoint == ()


def test_tmpfs_list() -> None:
    unit = parse(MINIMAL + '[rootfs]\nlayers = ["/l"]\ntmpfs = ["/run", "/tmp:size=64M"]\n')
    assert unit.rootfs is not None
    assert [(t.target, t.size) for t in unit.rootfs.tmpfs] == [("/run", None), ("/tmp", 64 * 1024 * 1024)]


# --- [rootfs].hosts and [rootfs].dns ---------------------------------------------

ROOTFS_HEAD = MINIMAL + '[rootfs]\nlayers = ["/l"]\n'


def test_rootfs_hosts_and_dns_parse_canonical_and_sorted() -> None:
    unit = parse(
        ROOTFS_HEAD + 'hosts = { "z.local" = "fd00:0::3", "db.local" = "10.1.2.3" }\ndns = ["1.1.1.1", "2606:4700:4700:0::1111"]\n',
    )
    assert unit.rootfs is not None
    assert unit.rootfs.hosts == (("db.local", "10.1.2.3"), ("z.local", "fd00::3"))
    assert unit.rootfs.dns == ("1.1.1.1", "2606:4700:4700::1111")


def test_rootfs_hosts_and_dns_default_empty() -> None:
    unit = parse(ROOTFS_HEAD)
    assert unit.rootfs is not None and unit.rootfs.hosts == () and unit.rootfs.dns == ()


@pytest.mark.parametrize(
    ("line", "key", "expected", "got"),
    [
        ('hosts = ["db.local"]', "[rootfs].hosts", "a table of hostname = address", '["db.local"]'),
        ('hosts = { "db.local" = "10.1.2" }', '[rootfs].hosts."db.local"', "an IPv4 or IPv6 address", '"10.1.2"'),
        ('hosts = { "db.local" = 10 }', '[rootfs].hosts."db.local"', "an IPv4 or IPv6 address", "10"),
        ('hosts = { "bad_name" = "10.1.2.3" }', "[rootfs].hosts.bad_name", "a hostname key", '"bad_name"'),
        ('hosts = { "-x" = "10.1.2.3" }', "[rootfs].hosts.-x", "a hostname key", '"-x"'),
        ('dns = "1.1.1.1"', "[rootfs].dns", "a list of at most 3 IP addresses", '"1.1.1.1"'),
        ('dns = ["1.1.1.1", "nope"]', "[rootfs].dns[1]", "an IPv4 or IPv6 address", '"nope"'),
        ('dns = ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"]', "[rootfs].dns", "a list of at most 3", "["),
    ],
)
def test_rootfs_hosts_and_dns_errors_name_file_and_key(line: str, key: str, expected: str, got: str) -> None:
    with pytest.raises(UnitFileError) as info:
        parse(ROOTFS_HEAD + line + "\n")
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith(f"{FILE}: {key}: expected ")
    assert expected in message and got in message.split(", got ", 1)[1]
