"""Who may do what on the control socket: the one table of route → level.

Pure: no I/O. The server finds the peer's level from its credentials
(peercred.py reads the groups) and asks `check` before it dispatches.

Three levels, each including the ones below it:
- nobody: not root and in neither group; refused before anything is read.
- operator: a member of `socket_group`. Reads everything and operates units
  (start, stop, restart, freeze, thaw, reload), which stays within what the
  unit files already allow.
- admin: uid 0 or a member of `admin_group`. Also what is root-equivalent:
  exec (a shell in a plain unit runs as root on the host; `-u 0` in a
  container is its root), and image import (supd, as root, reads any host
  path it is given and turns it into a root filesystem), image rm and prune.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Set
from dataclasses import dataclass

from supervisor.api.commands import ForbiddenError


class Level(enum.IntEnum):
    NOBODY = 0
    OPERATOR = 1
    ADMIN = 2


@dataclass(frozen=True)
class Need:
    """What a route needs, and how a refusal names the action."""

    level: Level
    action: str  # "exec", "image import": the start of a 403 message


# Every route of commands.ROUTES by command name. A route missing here is
# refused to everyone but root, and tests/unit/test_api_access.py fails:
# a new route must say which level it needs.
ROUTE_NEEDS: Mapping[str, Need] = {
    "info": Need(Level.OPERATOR, "reading supd's state"),
    "list_units": Need(Level.OPERATOR, "reading supd's state"),
    "unit_status": Need(Level.OPERATOR, "reading supd's state"),
    "logs": Need(Level.OPERATOR, "reading logs"),
    "events": Need(Level.OPERATOR, "reading events"),
    "tree": Need(Level.OPERATOR, "reading supd's state"),
    "images": Need(Level.OPERATOR, "listing images"),
    "command": Need(Level.OPERATOR, "operating units"),
    "reload": Need(Level.OPERATOR, "operating units"),
    "exec": Need(Level.ADMIN, "exec"),
    "import_image": Need(Level.ADMIN, "image import"),
    # root-equivalent too: supd reads the auth file the client names, as root
    "pull_image": Need(Level.ADMIN, "image pull"),
    # reads any unit's layers and sends them off the host with supd's credentials
    "push_image": Need(Level.ADMIN, "image push"),
    # removal deletes what other units may be about to start from
    "remove_image": Need(Level.ADMIN, "image rm"),
    "prune_images": Need(Level.ADMIN, "image prune"),
    # the manifests carry the unit's environment, which may hold secrets
    "export_kube": Need(Level.ADMIN, "kube export"),
}
UNKNOWN_ROUTE = Need(Level.ADMIN, "this request")


@dataclass(frozen=True)
class Groups:
    """The two configured groups: names as written in the config, and gids."""

    socket_group: str | None = None
    socket_gid: int | None = None
    admin_group: str | None = None
    admin_gid: int | None = None

    def describe_socket_group(self) -> str:
        return f'socket_group "{self.socket_group}"' if self.socket_group is not None else "socket_group (not configured)"

    def describe_admin_group(self) -> str:
        return f'admin_group "{self.admin_group}"' if self.admin_group is not None else "admin_group (not configured)"


def peer_level(uid: int, gids: Set[int], groups: Groups) -> Level:
    """The peer's level from its uid and every gid it holds (primary,
    real/effective/saved and supplementary: see peercred.peer_groups)."""
    if uid == 0:
        return Level.ADMIN
    if groups.admin_gid is not None and groups.admin_gid in gids:
        return Level.ADMIN
    if groups.socket_gid is not None and groups.socket_gid in gids:
        return Level.OPERATOR
    return Level.NOBODY


def need_of(command: str) -> Need:
    return ROUTE_NEEDS.get(command, UNKNOWN_ROUTE)


def refusal(need: Need, groups: Groups) -> str:
    """The 403 message for a peer below `need`: which group it is missing."""
    if need.level is Level.ADMIN:
        return f"{need.action} needs root or membership of {groups.describe_admin_group()}"
    return (
        f"{need.action} needs root or membership of {groups.describe_socket_group()}"
        f" or {groups.describe_admin_group()}"
    )


def nobody_refusal(uid: int, groups: Groups) -> str:
    """The 403 message for a peer with no level at all (before its request is routed)."""
    return (
        f"uid {uid} may not use supd: expected root or a member of {groups.describe_socket_group()}"
        f" (read and operate units) or {groups.describe_admin_group()} (everything)"
    )


def check(command: str, level: Level, groups: Groups) -> None:
    """ForbiddenError unless `level` may run `command`."""
    need = need_of(command)
    if level < need.level:
        raise ForbiddenError(refusal(need, groups))
