"""The route → level table (supervisor/api/access.py): every route has a level,
root-equivalent routes need admin, and a refusal names the missing group."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.api import access, commands
from supervisor.api.access import Groups, Level
from supervisor.api.commands import ForbiddenError
from supervisor.daemon.config import ConfigError, load_config

BOTH = Groups(socket_group="supd", socket_gid=1500, admin_group="supd-admin", admin_gid=1501)
SOCKET_ONLY = Groups(socket_group="supd", socket_gid=1500)

# What each level may do, written out by hand: a change to access.py that
# moves a route between levels has to change this too.
OPERATOR_ROUTES = {"info", "list_units", "unit_status", "logs", "events", "tree", "images", "command", "reload"}
ADMIN_ROUTES = {"exec", "import_image", "pull_image", "push_image", "remove_image", "prune_images", "export_kube"}


def test_every_route_has_a_level() -> None:
    """Fails when a route is added to commands.ROUTES without a line in access.ROUTE_NEEDS."""
    routes = {r.command for r in commands.ROUTES}
    missing = routes - set(access.ROUTE_NEEDS)
    assert not missing, f"routes without an access level in supervisor/api/access.py: {sorted(missing)}"
    stale = set(access.ROUTE_NEEDS) - routes
    assert not stale, f"access levels for routes that do not exist: {sorted(stale)}"


def test_the_table_is_the_documented_split() -> None:
    assert OPERATOR_ROUTES | ADMIN_ROUTES == {r.command for r in commands.ROUTES}
    assert {c for c, n in access.ROUTE_NEEDS.items() if n.level is Level.OPERATOR} == OPERATOR_ROUTES
    assert {c for c, n in access.ROUTE_NEEDS.items() if n.level is Level.ADMIN} == ADMIN_ROUTES


def test_every_unit_verb_is_operator_level() -> None:
    # One route carries every verb; resolving each lands on it.
    for verb in commands.VERBS:
        req = commands.resolve("POST", commands.command_path("web", verb))
        assert access.need_of(req.route.command).level is Level.OPERATOR


def test_an_unknown_command_needs_admin() -> None:
    """Fail closed: a handler reached without a table entry is for root and admins only."""
    assert access.need_of("prune_everything").level is Level.ADMIN
    with pytest.raises(ForbiddenError):
        access.check("prune_everything", Level.OPERATOR, BOTH)
    access.check("prune_everything", Level.ADMIN, BOTH)


@pytest.mark.parametrize(
    ("uid", "gids", "groups", "level"),
    [
        (0, set(), Groups(), Level.ADMIN),
        (0, set(), BOTH, Level.ADMIN),
        (1000, {1000, 1500}, BOTH, Level.OPERATOR),
        (1000, {1000, 1501}, BOTH, Level.ADMIN),
        (1000, {1500, 1501}, BOTH, Level.ADMIN),
        (1000, {1000, 4, 24}, BOTH, Level.NOBODY),
        (1000, {1500}, SOCKET_ONLY, Level.OPERATOR),
        (1000, {1501}, SOCKET_ONLY, Level.NOBODY),
        (1000, {1000}, Groups(), Level.NOBODY),
        (1000, {0}, Groups(), Level.NOBODY),  # gid 0 is not uid 0
    ],
)
def test_peer_level(uid: int, gids: set[int], groups: Groups, level: Level) -> None:
    assert access.peer_level(uid, gids, groups) is level


def test_operator_may_read_and_operate_but_not_exec_or_import() -> None:
    for command in OPERATOR_ROUTES:
        access.check(command, Level.OPERATOR, BOTH)
    for command in ADMIN_ROUTES:
        with pytest.raises(ForbiddenError) as e:
            access.check(command, Level.OPERATOR, BOTH)
        assert e.value.status == 403
    for command in OPERATOR_ROUTES | ADMIN_ROUTES:
        access.check(command, Level.ADMIN, BOTH)
        with pytest.raises(ForbiddenError):
            access.check(command, Level.NOBODY, BOTH)


def test_refusals_name_the_missing_group() -> None:
    with pytest.raises(ForbiddenError, match='^exec needs root or membership of admin_group "supd-admin"$'):
        access.check("exec", Level.OPERATOR, BOTH)
    with pytest.raises(ForbiddenError, match=r"^image import needs root or membership of admin_group \(not configured\)$"):
        access.check("import_image", Level.OPERATOR, SOCKET_ONLY)
    with pytest.raises(ForbiddenError, match='^operating units needs root or membership of socket_group "supd" or admin_group'):
        access.check("command", Level.NOBODY, BOTH)
    message = access.nobody_refusal(65534, Groups())
    assert message.startswith("uid 65534 may not use supd: expected root or a member of socket_group (not configured)")
    assert "admin_group (not configured)" in message


def test_admin_group_config_key_and_flag(tmp_path: Path) -> None:
    conf = tmp_path / "supd.toml"
    conf.write_text('socket_group = "supd"\nadmin_group = "supd-admin"\n')
    config = load_config(["--config", str(conf)])
    assert (config.socket_group, config.admin_group) == ("supd", "supd-admin")
    assert load_config(["--config", str(conf), "--admin-group", "wheel"]).admin_group == "wheel"
    conf.write_text("admin_group = 7\n")
    with pytest.raises(ConfigError, match="admin_group: expected a non-empty string, got 7"):
        load_config(["--config", str(conf)])
