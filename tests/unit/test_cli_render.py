"""supctl's human output: exact lines for a few states (systemctl's shapes)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from supervisor.cli import render

NOW = datetime(2026, 11, 29, 23, 50, 6, tzinfo=timezone.utc)


def web(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": "web",
        "state": "running",
        "pid": 1234,
        "since": "2026-11-29T23:50:01.000+00:00",
        "restarts": 2,
        "last_exit": {"code": 1, "signal": None, "reason": "exit 1"},
        "error": None,
        "file": "/abs/units/web.toml",
        "cgroup": "/supd.slice/supd-web.scope",
        "frozen": False,
        "health": "healthy",
        "resources": {
            "memory_current": 1258291,
            "memory_peak": 2097152,
            "cpu_usage_ns": 12_345_678,
            "pids_current": 3,
            "oom_kills": 0,
        },
        "description": "busybox httpd",
        "enabled": True,
        "limits": {"memory_max": 64 << 20, "memory_high": None, "pids_max": 64, "cpu_quota": None, "cpu_weight": None},
        "processes": [{"pid": 1234, "cmdline": "/bin/httpd -f"}, {"pid": 1240, "cmdline": "/bin/sh"}],
    }
    status.update(changes)
    return status


def test_status_of_a_running_unit_reads_like_systemctl() -> None:
    text = render.render_status(web(), NOW, ["GET / 200", "GET /x 404"])
    assert text.splitlines() == [
        "● web.toml - busybox httpd",
        "     Loaded: loaded (/abs/units/web.toml; enabled)",
        "     Active: active (running) since Sun 2026-11-29 23:50:01 UTC; 5s ago",
        "   Main PID: 1234 (httpd)",
        "   Restarts: 2 (last exit: exit 1)",
        "     Health: healthy",
        "      Tasks: 3 (limit: 64)",
        "     Memory: 1.2M (peak: 2.0M, max: 64.0M)",
        "        CPU: 12ms",
        "  OOM kills: 0",
        "     CGroup: /supd.slice/supd-web.scope",
        "             ├─1234 /bin/httpd -f",
        "             └─1240 /bin/sh",
        "",
        "GET / 200",
        "GET /x 404",
    ]


def test_oom_kills_of_the_run_and_in_all_also_after_the_run() -> None:
    running = render.render_status(web(oom_kills=1, oom_kills_total=3), NOW)
    assert "  OOM kills: 1 (total: 3)" in running.splitlines()
    ended = web(state="restarting", pid=None, resources={}, cgroup=None, processes=[], oom_kills=2, oom_kills_total=2,
                last_exit={"code": None, "signal": "SIGKILL", "reason": "oom-kill"}, restarts=1)  # fmt: skip
    lines = render.render_status(ended, NOW).splitlines()
    assert "   Restarts: 1 (last exit: oom-kill)" in lines and "  OOM kills: 2 (total: 2)" in lines
    quiet = web(state="inactive", pid=None, resources={}, cgroup=None, processes=[], oom_kills=0, oom_kills_total=0)
    assert "OOM kills" not in render.render_status(quiet, NOW)


def test_status_of_an_invalid_unit_shows_the_error() -> None:
    text = render.render_status(
        web(state="error", error="web.toml: [restart].delay: expected a duration", pid=None, resources={},
            cgroup=None, health=None, processes=[], last_exit=None, restarts=0, enabled=None),
        NOW,
    )
    assert text.splitlines() == [
        "● web.toml - busybox httpd",
        "     Loaded: error (/abs/units/web.toml)",
        "     Active: error",
        "      Error: web.toml: [restart].delay: expected a duration",
        "   Restarts: 0",
    ]


@pytest.mark.parametrize(
    ("state", "active"),
    [
        ("frozen", "active (frozen)"),
        ("starting", "activating (start)"),
        ("stopping", "deactivating (stop)"),
        ("restarting", "activating (auto-restart)"),
        ("exited", "inactive (dead)"),
        ("inactive", "inactive (dead)"),
        ("failed", "failed (Result: exit 1)"),
    ],
)
def test_active_line_maps_every_state(state: str, active: str) -> None:
    assert render.active_line(web(state=state), NOW) == f"{active} since Sun 2026-11-29 23:50:01 UTC; 5s ago"


def test_bullet_is_colored_only_when_asked() -> None:
    assert render.render_status(web(), NOW, color=True).startswith("\x1b[0;1;32m●\x1b[0m web.toml")
    assert render.render_status(web(state="failed"), NOW, color=True).startswith("\x1b[0;1;31m●")
    assert render.render_status(web(), NOW, color=False).startswith("● web.toml")


def test_frozen_unit_names_why() -> None:
    lines = render.render_status(web(state="frozen", frozen=True, freeze_reason="pressure"), NOW).splitlines()
    assert "     Frozen: pressure" in lines


def test_list_is_a_table_with_a_footer() -> None:
    text = render.render_list([web(), web(name="batch", state="exited", pid=None, description="nightly", restarts=0)], NOW)
    assert text.splitlines() == [
        "UNIT   STATE    PID   UPTIME  RESTARTS  DESCRIPTION",
        "web    running  1234  5s      2         busybox httpd",
        "batch  exited   -     -       0         nightly",
        "",
        "2 units listed.",
    ]
    assert render.render_list([], NOW).splitlines()[-1] == "0 units listed."


def test_tree_is_cgls_with_cgtop_columns() -> None:
    scope = {"name": "supd-web.scope", "unit": "web", "state": "running", "memory_current": 1 << 20,
             "cpu_usage_ns": 12_000_000, "tasks": 3, "children": [], "processes": [{"pid": 1234, "cmdline": "/bin/httpd -f"}]}
    tree = {
        "name": "supd.slice", "memory_current": 5 << 20, "cpu_usage_ns": 3_000_000_000, "tasks": 4, "processes": [],
        "children": [
            {"name": "supd-web.slice", "memory_current": 1 << 20, "cpu_usage_ns": 12_000_000, "tasks": 3,
             "children": [scope], "processes": []},
            {"name": "supd-db.scope", "unit": "db", "state": "exited", "memory_current": None, "cpu_usage_ns": None,
             "tasks": None, "children": [], "processes": []},
        ],
    }
    assert render.render_tree(tree).splitlines() == [
        "CGROUP                    TASKS  MEMORY     CPU",
        "supd.slice                    4    5.0M  3.000s",
        "├─supd-web.slice              3    1.0M    12ms",
        "│ └─supd-web.scope            3    1.0M    12ms",
        "│   └─1234 /bin/httpd -f",
        "└─supd-db.scope (exited)      -       -       -",
    ]


@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "-"), (0, "0B"), (1023, "1023B"), (1024, "1.0K"), (1258291, "1.2M"), (64 << 20, "64.0M"), (3 << 30, "3.0G")],
)
def test_human_size_is_1024_based(n: int | None, text: str) -> None:
    assert render.human_size(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (5, "5s"), (59.9, "59s"), (123, "2min 3s"), (3600, "1h"), (3720, "1h 2min"),
     (86400 + 4 * 3600 + 5, "1 day 4h"), (3 * 86400, "3 days")],
)
def test_human_duration_keeps_two_units(seconds: float, text: str) -> None:
    assert render.human_duration(seconds) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [(12_345_678, "12ms"), (1_234_000_000, "1.234s"), (123_456_000_000, "2min 3.456s"), (3_723_000_000_000, "1h 2min 3.000s")],
)
def test_human_cpu(ns: int, text: str) -> None:
    assert render.human_cpu(ns) == text


def test_event_line() -> None:
    event = {"time": "2026-11-29T23:50:01.123+00:00", "unit": "web", "event": "frozen", "reason": "pressure"}
    assert render.render_event(event) == "2026-11-29 23:50:01 web: frozen (pressure)"


def test_reload_summary_and_info() -> None:
    result = {"added": ["a"], "changed": [{"name": "b", "action": "restart"}], "removed": ["c"], "errors": {"d": "d.toml: bad"}}
    assert render.render_reload(result) == "added: a\nchanged: b\nremoved: c\nerror: d: d.toml: bad\n"
    assert render.render_info({"version": "0.1", "units": 2, "driver": None}) == "version: 0.1\nunits:   2\ndriver:  -\n"


def test_status_shows_the_network_address_and_ports() -> None:
    network = {"network": "supd", "address": "10.123.0.7", "addresses": ["10.123.0.7/16"],
               "ports": ["8080:80/tcp", "127.0.0.1:5353:53/udp"]}  # fmt: skip
    lines = render.render_status(web(network=network), NOW).splitlines()
    at = lines.index("   Main PID: 1234 (httpd)")
    assert lines[at + 1 : at + 3] == [
        "    Network: supd (10.123.0.7)",
        "      Ports: 8080:80/tcp, 127.0.0.1:5353:53/udp",
    ]
    assert not [line for line in render.render_status(web(network=None), NOW).splitlines() if "Network" in line]


def test_status_shows_the_command_that_ran_quoted_like_a_shell() -> None:
    lines = render.render_status(web(command=["redis-server", "--save", "", "--dir", "/data dir"]), NOW).splitlines()
    assert lines[4] == "    Command: redis-server --save '' --dir '/data dir'"
    assert "Command" not in render.render_status(web(command=None), NOW)


def test_image_config_lines() -> None:
    image = {
        "name": "/srv/images/redis:7",
        "digest": "sha256:" + "a" * 64,
        "config": {
            "Entrypoint": ["docker-entrypoint.sh"],
            "Cmd": ["redis-server", "--save", ""],
            "Env": ["PATH=/usr/bin", "REDIS_VERSION=7"],
            "WorkingDir": "/data",
            "User": "",
            "StopSignal": "",
            "Healthcheck": {"Test": ["CMD", "redis-cli", "ping"], "Interval": 5_000_000_000, "Retries": 3},
        },
    }
    assert render.render_image_config(image).splitlines() == [
        "      Image: /srv/images/redis:7",
        "     Digest: sha256:" + "a" * 64,
        " Entrypoint: docker-entrypoint.sh",
        "        Cmd: redis-server --save ''",
        " WorkingDir: /data",
        "       User: -",
        " StopSignal: -",
        "        Env: PATH=/usr/bin",
        "             REDIS_VERSION=7",
        "Healthcheck: CMD redis-cli ping",
        "             Interval: 5s",
        "             Retries: 3",
    ]


def test_image_list_shows_shared_size_and_units() -> None:
    images = [
        {"name": "/srv/img:v1", "digest": "sha256:" + "a" * 64, "layers": ["x", "y"], "size": 3 * 1024 * 1024,
         "shared_size": 1024 * 1024, "created": None, "units": ["db", "web"]},
        {"name": "/srv/img:old", "digest": "sha256:" + "b" * 64, "layers": ["x"], "size": 2048,
         "shared_size": None, "created": "2026-01-01T00:00:00Z", "units": []},
    ]
    lines = render.render_images(images).splitlines()
    assert lines[0].split() == ["IMAGE", "DIGEST", "LAYERS", "SIZE", "SHARED", "CREATED", "UNITS"]
    assert lines[1].split() == ["/srv/img:v1", "a" * 12, "2", "3.0M", "1.0M", "-", "db,web"]
    assert lines[2].split() == ["/srv/img:old", "b" * 12, "1", "2.0K", "-", "2026-01-01T00:00:00Z", "-"]


def test_removal_lines() -> None:
    removal = {"images": [{"name": "/srv/img:v1", "digest": "sha256:" + "a" * 64}], "layers": ["sha256:" + "c" * 64],
               "tmp_dirs": 2, "freed": 5 * 1024 * 1024}
    assert render.render_removal(removal).splitlines() == [
        "removed image /srv/img:v1 sha256:" + "a" * 64,
        "removed layer sha256:" + "c" * 64,
        "removed 2 stale temp dir(s)",
        "freed 5.0M",
    ]
    assert render.render_removal({"images": [], "layers": [], "tmp_dirs": 0, "freed": 0}) == "freed 0B\n"


G, R, Y, C, X = "\x1b[0;1;32m", "\x1b[0;1;31m", "\x1b[0;1;33m", "\x1b[0;1;36m", "\x1b[0m"


@pytest.mark.parametrize(("state", "code"), [("running", G), ("failed", R), ("error", R), ("restarting", Y), ("frozen", C)])
def test_states_have_systemctls_colours(state: str, code: str) -> None:
    assert render.paint(state, state, True) == f"{code}{state}{X}"
    assert render.paint(state, state, False) == state


def test_status_colours_the_bullet_and_the_active_state() -> None:
    lines = render.render_status(web(state="restarting"), NOW, color=True).splitlines()
    assert lines[0].startswith(f"{Y}●{X} web.toml")
    assert lines[2] == f"     Active: {Y}activating (auto-restart){X} since Sun 2026-11-29 23:50:01 UTC; 5s ago"
    assert "\x1b" not in render.render_status(web(state="restarting"), NOW, color=False)


def test_list_colours_the_state_and_keeps_the_columns() -> None:
    units = [web(), web(name="batch", state="failed", pid=None, description="nightly", restarts=0)]
    lines = render.render_list(units, NOW, color=True).splitlines()
    assert lines[1] == f"web    {G}running{X}  1234  5s      2         busybox httpd"
    assert lines[2] == f"batch  {R}failed{X}   -     -       0         nightly"
    assert "\x1b" not in render.render_list(units, NOW)


def test_event_is_coloured_by_the_state_it_names() -> None:
    event = {"time": "2026-11-29T23:50:01.123+00:00", "unit": "web", "event": "failed", "reason": "exit 1"}
    assert render.render_event(event, color=True) == f"2026-11-29 23:50:01 web: {R}failed{X} (exit 1)"
    loaded = dict(event, event="loaded", reason="unit file")
    assert render.render_event(loaded, color=True) == "2026-11-29 23:50:01 web: loaded (unit file)"


def _tree_with(cmdline: str, state: str = "running") -> dict[str, Any]:
    scope = {"name": "supd-web.scope", "unit": "web", "state": state, "memory_current": 1 << 20,
             "cpu_usage_ns": 12_000_000, "tasks": 1, "children": [], "processes": [{"pid": 1234, "cmdline": cmdline}]}
    return {"name": "supd.slice", "memory_current": 1 << 20, "cpu_usage_ns": 12_000_000, "tasks": 1, "processes": [],
            "children": [scope]}  # fmt: skip


def test_tree_cuts_command_lines_at_the_given_width_only() -> None:
    long = "/bin/sh -c " + "x" * 200
    assert render.render_tree(_tree_with(long), 160).splitlines()[3] == ("  └─1234 " + long)[:160]
    assert render.render_tree(_tree_with(long), 100).splitlines()[3] == ("  └─1234 " + long)[:100]
    assert render.render_tree(_tree_with(long)).splitlines()[3] == "  └─1234 " + long  # a pipe: whole


def test_tree_colours_scopes_and_keeps_the_columns() -> None:
    lines = render.render_tree(_tree_with("sleep 1", "frozen"), 80, color=True).splitlines()
    assert lines[0] == "CGROUP            TASKS  MEMORY   CPU"  # colour codes take no columns
    assert lines[2] == f"└─{C}supd-web.scope{X}      1    1.0M  12ms"
    lines = render.render_tree(_tree_with("sleep 1", "failed"), 80, color=True).splitlines()
    assert lines[0] == "CGROUP                     TASKS  MEMORY   CPU"
    assert lines[2] == f"└─supd-web.scope {R}(failed){X}      1    1.0M  12ms"


def test_info_has_no_python_reprs() -> None:
    info = {"version": "0.1.0", "driver": None, "live_restore": False, "units": 3,
            "states": {"running": 2, "error": 1}, "empty": {}}  # fmt: skip
    assert render.render_info(info).splitlines() == [
        "version:      0.1.0",
        "driver:       -",
        "live_restore: no",
        "units:        3",
        "states:       1 error, 2 running",
        "empty:        -",
    ]
    assert render.render_info({"live_restore": True}) == "live_restore: yes\n"
