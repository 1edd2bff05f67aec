"""The control API's routes and the paths a client asks for.

Shared by the server (through supervisor.api.commands, which re-exports all
of this) and by supctl, which imports only this module on its way to the
socket: nothing here may import more than the interpreter already has at
start-up (no dataclasses, re or urllib: supctl's start-up budget is a few
milliseconds; see bench/cli_latency.py).
"""

from __future__ import annotations

from collections import namedtuple

VERBS = ("start", "stop", "restart", "freeze", "thaw")
API_PREFIX = "/v1"
EXEC_UPGRADE_TOKEN = "supd-exec"
DEFAULT_EVENTS_N = 50
DEFAULT_LOG_LINES = 100

# RFC 3986 unreserved characters: everything else in a path parameter is %-escaped
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote_segment(value: str) -> str:
    """One path segment, %-escaped so that "/" or "?" in it stays part of it."""
    return "".join(c if c in _UNRESERVED else "".join(f"%{b:02X}" for b in c.encode()) for c in value)


# collections.namedtuple, not typing.NamedTuple or a dataclass: immutable all
# the same, and typing alone would cost supctl more than this whole module.
_RouteFields = namedtuple("_RouteFields", "command method pattern has_body streams upgrade", defaults=(False, False, False))


class Route(_RouteFields):
    """One API command: its HTTP method, path pattern ("/v1/units/{name}/{verb}")
    and response kind: `has_body`, `streams` (may answer with a chunked stream,
    follow=1), `upgrade` (HTTP upgrade to the exec protocol)."""

    __slots__ = ()
    command: str
    method: str
    pattern: str
    has_body: bool
    streams: bool
    upgrade: bool

    def path(self, **params: str) -> str:
        """The request path for these parameters (client side)."""
        return self.pattern.format(**{k: quote_segment(str(v)) for k, v in params.items()})

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if `path` fits this route's pattern (server side)."""
        want = self.pattern.strip("/").split("/")
        got = path.strip("/").split("/")
        if len(want) != len(got):
            return None
        params: dict[str, str] = {}
        for w, g in zip(want, got):
            if w.startswith("{") and w.endswith("}"):
                if not g:
                    return None
                params[w[1:-1]] = g
            elif w != g:
                return None
        return params


ROUTES: tuple[Route, ...] = (
    Route("info", "GET", "/v1/info"),
    Route("list_units", "GET", "/v1/units"),
    Route("unit_status", "GET", "/v1/units/{name}"),
    Route("logs", "GET", "/v1/units/{name}/logs", streams=True),
    Route("exec", "POST", "/v1/units/{name}/exec", has_body=True, upgrade=True),
    # ?kind=pod|deployment&namespace=NS&image=REF: the unit as Kubernetes manifests (supervisor/kube)
    Route("export_kube", "GET", "/v1/units/{name}/kube"),
    Route("command", "POST", "/v1/units/{name}/{verb}"),
    Route("reload", "POST", "/v1/reload"),
    Route("events", "GET", "/v1/events", streams=True),
    Route("tree", "GET", "/v1/tree"),
    Route("images", "GET", "/v1/images"),
    Route("import_image", "POST", "/v1/images", has_body=True),
    Route("pull_image", "POST", "/v1/images/pull", has_body=True),
    Route("push_image", "POST", "/v1/images/push", has_body=True),
    Route("remove_image", "POST", "/v1/images/remove", has_body=True),
    Route("prune_images", "POST", "/v1/images/prune"),
)
ROUTES_BY_COMMAND: dict[str, Route] = {r.command: r for r in ROUTES}


def logs_path(name: str, n: int, follow: bool, since_ns: int | None = None, until_ns: int | None = None) -> str:
    path = ROUTES_BY_COMMAND["logs"].path(name=name) + f"?n={int(n)}&follow={int(follow)}"
    if since_ns is not None:
        path += f"&since={int(since_ns)}"
    if until_ns is not None:
        path += f"&until={int(until_ns)}"
    return path


def events_path(n: int, follow: bool) -> str:
    return ROUTES_BY_COMMAND["events"].path() + f"?n={int(n)}&follow={int(follow)}"


def export_kube_path(name: str, kind: str, namespace: str | None, image: str | None) -> str:
    query = f"?kind={quote_segment(kind)}"
    if namespace:
        query += f"&namespace={quote_segment(namespace)}"
    if image:
        query += f"&image={quote_segment(image)}"
    return ROUTES_BY_COMMAND["export_kube"].path(name=name) + query


def command_path(name: str, verb: str) -> str:
    if verb not in VERBS:
        raise ValueError(f"unknown verb {verb!r}; expected one of {VERBS}")
    return ROUTES_BY_COMMAND["command"].path(name=name, verb=verb)
