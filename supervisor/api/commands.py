"""The control API, defined once for the server and the client (circus pattern).

Pure: routes, parameter and body validation, error types and the `Controller`
protocol the daemon implements. No I/O here, and nothing that slows supctl's
start-up (anyio is only named for type checkers).

Wire protocol (what `curl --unix-socket` sees):
- JSON answers are `application/json`; errors are `{"error": "..."}` with 400,
  403, 404 (no such unit / path), 405 (with `Allow:`), 409, 413 (body > 1 MiB), 500.
- `GET /v1/units/{name}/logs?n=N&follow=0|1&since=NS&until=NS`: the last N
  records (supervisor/logformat.py: `TIME STREAM F|P TEXT` lines) with a time
  in [since, until] (Unix nanoseconds; either may be left out), as text; with
  follow=1 a chunked stream of the new ones that ends only when the client
  hangs up (`until` is the client's to apply there).
- `GET /v1/events?n=N&follow=0|1`: a JSON list; with follow=1 a chunked
  `application/x-ndjson` stream (the last N events, then new ones).
- `POST /v1/units/{name}/exec` with `Connection: Upgrade`, `Upgrade: supd-exec`
  and an `ExecRequest` body: after `101 Switching Protocols` the client sends one
  message carrying exactly 3 fds (SCM_RIGHTS: stdin, stdout, stderr), then lines
  `{"signal": N}`; the server ends with `{"exit": code}` (or `{"error", "status"}`)
  and closes. A client that hangs up early gets its process SIGHUP, then SIGKILL.
  With `"tty": true` in the body the client's one message carries no fds: the
  process gets a new pty inside the unit as its controlling terminal and the
  server's first line, `{"tty": true}`, carries the pty's master (SCM_RIGHTS),
  which the client reads and writes itself; it sends `{"resize": [rows, cols]}`
  lines when its window changes (the body's `size` is the first one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

# the routes and client paths live in routes.py (supctl imports only that); one API, named from here too
from supervisor.api.routes import (  # noqa: F401
    API_PREFIX,
    DEFAULT_EVENTS_N,
    DEFAULT_LOG_LINES,
    EXEC_UPGRADE_TOKEN,
    ROUTES,
    ROUTES_BY_COMMAND,
    VERBS,
    Route,
    command_path,
    events_path,
    logs_path,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractContextManager

    from anyio.abc import ObjectReceiveStream

MAX_BODY_BYTES = 1024 * 1024
# Same shape as the unit-name rule in DESIGN "Unit files"; checked here so a
# bad name is a 400 before it reaches the daemon (or a path join).
UNIT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MAX_LINES_N = 1_000_000


class ApiError(Exception):
    """An error the API reports to the client as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


class BadRequestError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class ForbiddenError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(403, message)


class NoSuchUnitError(ApiError):
    def __init__(self, name: str) -> None:
        super().__init__(404, f"no such unit: {name}")
        self.name = name


class NotFoundError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class MethodNotAllowedError(ApiError):
    def __init__(self, method: str, path: str, allowed: tuple[str, ...]) -> None:
        super().__init__(405, f"method {method} not allowed on {path}; expected {' or '.join(allowed)}")
        self.allowed = allowed


class ConflictError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)


class TooManyFollowersError(ApiError):
    def __init__(self, uid: int, limit: int) -> None:
        super().__init__(
            429, f"uid {uid} already follows {limit} log or event streams, the limit per peer; end one first"
        )


class PayloadTooLargeError(ApiError):
    def __init__(self, size: int, limit: int = MAX_BODY_BYTES) -> None:
        super().__init__(413, f"request body of {size} bytes is over the limit of {limit} bytes")


class ExecHandle(Protocol):
    pid: int

    async def wait(self) -> int:
        """Exit code of the process (128+signal when a signal ended it)."""
        ...

    def kill(self, sig: int) -> None: ...

    def kill_group(self, sig: int) -> None:
        """Signal the whole process group; ProcessLookupError when none is left."""
        ...

    @property
    def tty(self) -> int | None:
        """The pty master the process has as its terminal (exec -t), else None."""
        ...

    def resize(self, rows: int, cols: int) -> None:
        """Set the pty's window size (the process gets SIGWINCH); no-op without one."""
        ...

    def close(self) -> None:
        """Let go of the pty master: once the client's copy is closed too, the
        kernel hangs up the terminal (SIGHUP to its session). Idempotent."""
        ...


class Controller(Protocol):
    """What the API needs from the daemon. Implemented by `daemon.supervisor`."""

    def info(self) -> dict: ...

    def list_units(self) -> list[dict]: ...

    def unit_status(self, name: str) -> dict: ...

    async def command(self, name: str, verb: str) -> dict: ...

    async def reload(self) -> dict: ...

    def log_file(self, name: str) -> Path: ...

    def log_driver(self, name: str) -> str: ...

    def read_journal(
        self, name: str, n: int, since_ns: int | None, until_ns: int | None, follow: bool
    ) -> AsyncIterator[bytes]: ...

    def recent_events(self, n: int) -> list[dict]: ...

    def subscribe_events(self) -> AbstractContextManager[ObjectReceiveStream[dict]]: ...

    def tree(self) -> dict: ...

    async def start_exec(
        self,
        name: str,
        argv: list[str],
        fds: tuple[int, int, int],
        *,
        user: str | None,
        env: dict[str, str],
        cwd: str | None,
        tty: bool = False,
        size: tuple[int, int] | None = None,
    ) -> ExecHandle:
        """Start argv inside the unit with `fds` as its stdin/stdout/stderr, or,
        with `tty`, with a new pty (window `size`, rows and columns) as all three.

        The fds stay owned by the caller (the server closes them once this returns)."""
        ...

    async def images(self) -> list[dict]: ...

    async def import_image(self, path: str, tag: str) -> dict: ...

    async def pull_image(self, source: str, authfile: str | None) -> dict: ...
    async def push_image(self, source: str, destination: str, authfile: str | None, tls_verify: bool | None) -> dict: ...
    async def remove_image(self, ref: str) -> dict: ...

    async def prune_images(self) -> dict: ...

    async def export_kube(self, name: str, kind: str, namespace: str | None, image: str | None) -> dict:
        """The unit as Kubernetes manifests: {"unit", "documents", "warnings",
        "comments"}, or {"unit", "needs_push": why} when its root filesystem is
        not in a registry and no `image` was given."""
        ...




@dataclass(frozen=True)
class Request:
    """A resolved request: which command, with validated path and query parameters."""

    route: Route
    params: dict[str, str]
    query: dict[str, str]


def resolve(method: str, target: str) -> Request:
    """Find the route for `method target`; 404 for an unknown path, 405 for a wrong method."""
    try:
        split = urlsplit(target)
    except ValueError as e:  # "//[x": an unbalanced IPv6 host part
        raise BadRequestError(f"malformed request target {target!r}: {e}") from e
    path = split.path
    allowed: list[str] = []
    for route in ROUTES:
        params = route.match(path)
        if params is None or params.get("verb", VERBS[0]) not in VERBS:
            continue
        if route.method != method:
            allowed.append(route.method)
            continue
        validate_params(params)
        return Request(route, params, parse_query(split.query))
    if allowed:
        raise MethodNotAllowedError(method, path, tuple(dict.fromkeys(allowed)))
    raise NotFoundError(f"no such API path: {path}")


def parse_query(query: str) -> dict[str, str]:
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    except ValueError as e:
        raise BadRequestError(f"malformed query string {query!r}: {e}") from e
    return {k: v[-1] for k, v in parsed.items()}


def validate_params(params: Mapping[str, str]) -> None:
    name = params.get("name")
    if name is not None and not UNIT_NAME_RE.fullmatch(name):
        raise BadRequestError(f"invalid unit name {name!r}: expected [a-z0-9][a-z0-9_.-]{{0,63}}")


def query_int(query: Mapping[str, str], key: str, default: int) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"query parameter {key}: expected a non-negative integer, got {raw!r}") from None
    if not 0 <= value <= MAX_LINES_N:
        raise BadRequestError(f"query parameter {key}: expected 0..{MAX_LINES_N}, got {value}")
    return value


def query_time_ns(query: Mapping[str, str], key: str) -> int | None:
    """A time as Unix nanoseconds (`since`, `until`); None when absent."""
    raw = query.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequestError(f"query parameter {key}: expected Unix nanoseconds, got {raw!r}") from None


def query_flag(query: Mapping[str, str], key: str) -> bool:
    raw = query.get(key, "0")
    if raw in ("0", "", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise BadRequestError(f"query parameter {key}: expected 0 or 1, got {raw!r}")


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body; an empty body is `None`."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequestError(f"malformed JSON body: {e}") from e


# a window size the kernel keeps (struct winsize: unsigned short)
MAX_WINDOW = 0xFFFF


@dataclass(frozen=True)
class ExecRequest:
    argv: list[str]
    user: str | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    tty: bool = False
    size: tuple[int, int] | None = None  # rows, cols; only with tty

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"argv": self.argv, "user": self.user, "env": self.env or {}, "cwd": self.cwd}
        if self.tty:  # a pipes exec sends the same body as before
            body["tty"] = True
            body["size"] = None if self.size is None else list(self.size)
        return body


def _expect_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestError(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def _optional_str(body: Mapping[str, Any], key: str, what: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{what}.{key}: expected a string or null, got {value!r}")
    return value


def parse_exec_body(body: Any) -> ExecRequest:
    what = "exec request"
    obj = _expect_object(body, what)
    unknown = set(obj) - {"argv", "user", "env", "cwd", "tty", "size"}
    if unknown:
        raise BadRequestError(f"{what}: unknown keys {sorted(unknown)}; expected argv, user, env, cwd, tty, size")
    argv = obj.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise BadRequestError(f"{what}.argv: expected a non-empty list of strings, got {argv!r}")
    env = obj.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise BadRequestError(f"{what}.env: expected an object of strings, got {env!r}")
    tty = obj.get("tty", False)
    if not isinstance(tty, bool):
        raise BadRequestError(f"{what}.tty: expected true or false, got {tty!r}")
    size = obj.get("size")
    if size is not None:
        if not tty:
            raise BadRequestError(f"{what}.size: a window size needs tty true")
        size = window_size(size, f"{what}.size")
    return ExecRequest(
        argv=argv, user=_optional_str(obj, "user", what), env=env, cwd=_optional_str(obj, "cwd", what),
        tty=tty, size=size,
    )


def window_size(value: Any, what: str) -> tuple[int, int]:
    """[rows, cols], each 0..65535 (0: unknown, as the kernel has it)."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_WINDOW for n in value)
    ):
        raise BadRequestError(f"{what}: expected [rows, cols], each 0..{MAX_WINDOW}, got {value!r}")
    return value[0], value[1]


@dataclass(frozen=True)
class ImportImageRequest:
    path: str
    tag: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "tag": self.tag}


def parse_import_image_body(body: Any) -> ImportImageRequest:
    what = "image import request"
    obj = _expect_object(body, what)
    path, tag = obj.get("path"), obj.get("tag", "latest")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequestError(f"{what}.path: expected an absolute path, got {path!r}")
    if not isinstance(tag, str) or not tag:
        raise BadRequestError(f"{what}.tag: expected a non-empty string, got {tag!r}")
    return ImportImageRequest(path, tag)


@dataclass(frozen=True)
class PullImageRequest:
    source: str  # what the user typed; relative archive paths already absolute
    authfile: str | None = None  # absolute; None: the daemon's auth_file

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"source": self.source}
        if self.authfile is not None:
            body["authfile"] = self.authfile
        return body


def _check_authfile(authfile: Any, what: str) -> None:
    """A pull's or a push's `authfile`: absent, or an absolute path."""
    if authfile is not None and (not isinstance(authfile, str) or not authfile.startswith("/")):
        raise BadRequestError(f"{what}.authfile: expected an absolute path, got {authfile!r}")


def parse_pull_image_body(body: Any) -> PullImageRequest:
    what = "image pull request"
    obj = _expect_object(body, what)
    source, authfile = obj.get("source"), obj.get("authfile")
    if not isinstance(source, str) or not source:
        raise BadRequestError(f"{what}.source: expected an image reference like busybox:1.36, got {source!r}")
    _check_authfile(authfile, what)
    return PullImageRequest(source, authfile)


@dataclass(frozen=True)
class PushImageRequest:
    source: str  # a unit name, or a stored image (a name it was pulled or imported under, or its digest)
    destination: str  # REGISTRY/NAME:TAG
    authfile: str | None = None  # absolute; None: the daemon's auth_file
    tls_verify: bool | None = None  # None: as for a pull (loopback and insecure_registries without TLS)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"source": self.source, "destination": self.destination}
        if self.authfile is not None:
            body["authfile"] = self.authfile
        if self.tls_verify is not None:
            body["tls_verify"] = self.tls_verify
        return body


def parse_push_image_body(body: Any) -> PushImageRequest:
    what = "image push request"
    obj = _expect_object(body, what)
    unknown = set(obj) - {"source", "destination", "authfile", "tls_verify"}
    if unknown:
        raise BadRequestError(f"{what}: unknown keys {sorted(unknown)}; expected source, destination, authfile, tls_verify")
    source, destination = obj.get("source"), obj.get("destination")
    authfile, tls_verify = obj.get("authfile"), obj.get("tls_verify")
    if not isinstance(source, str) or not source:
        raise BadRequestError(f"{what}.source: expected a unit name or a stored image, got {source!r}")
    if not isinstance(destination, str) or not destination:
        raise BadRequestError(f"{what}.destination: expected REGISTRY/NAME:TAG, got {destination!r}")
    _check_authfile(authfile, what)
    if tls_verify is not None and not isinstance(tls_verify, bool):
        raise BadRequestError(f"{what}.tls_verify: expected true or false, got {tls_verify!r}")
    return PushImageRequest(source, destination, authfile, tls_verify)


@dataclass(frozen=True)
class RemoveImageRequest:
    ref: str  # "DIR:TAG" as imported, or a manifest digest

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref}


def parse_remove_image_body(body: Any) -> RemoveImageRequest:
    what = "image rm request"
    ref = _expect_object(body, what).get("ref")
    if not isinstance(ref, str) or not ref:
        raise BadRequestError(f'{what}.ref: expected "DIR:TAG" or a digest "sha256:<hex>", got {ref!r}')
    return RemoveImageRequest(ref)


KUBE_KINDS = ("pod", "deployment")
# DNS-1123 label, what a Kubernetes namespace is
KUBE_NAMESPACE_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class ExportKubeQuery:
    kind: str = "pod"
    namespace: str | None = None
    image: str | None = None  # a pushed image to run instead of the unit's own


def parse_export_kube_query(query: Mapping[str, str]) -> ExportKubeQuery:
    what = "kube export"
    unknown = set(query) - {"kind", "namespace", "image"}
    if unknown:
        raise BadRequestError(f"{what}: unknown query parameters {sorted(unknown)}; expected kind, namespace, image")
    kind = query.get("kind") or "pod"
    if kind not in KUBE_KINDS:
        raise BadRequestError(f"{what}: kind: expected pod or deployment, got {kind!r}")
    namespace = query.get("namespace") or None
    if namespace is not None and not KUBE_NAMESPACE_RE.fullmatch(namespace):
        raise BadRequestError(f"{what}: namespace: expected a DNS label (a-z, 0-9, inner dashes, at most 63), got {namespace!r}")
    image = query.get("image") or None
    if image is not None and (len(image) > 1024 or any(c.isspace() for c in image)):
        raise BadRequestError(f"{what}: image: expected an image reference, got {image[:100]!r}")
    return ExportKubeQuery(kind, namespace, image)


def parse_signal_message(line: bytes) -> int:
    """One line the exec client sends after the upgrade: `{"signal": N}`."""
    obj = parse_json_body(line)
    sig = obj.get("signal") if isinstance(obj, dict) else None
    if not isinstance(sig, int) or isinstance(sig, bool) or not 1 <= sig <= 64:
        raise BadRequestError(f'exec control message: expected {{"signal": 1..64}}, got {line[:100]!r}')
    return sig


@dataclass(frozen=True)
class Resize:
    rows: int
    cols: int


def parse_exec_message(line: bytes) -> int | Resize:
    """A line the exec client sends after the upgrade: `{"signal": N}` (the
    signal number) or `{"resize": [rows, cols]}` (exec -t: its window changed)."""
    obj = parse_json_body(line)
    if isinstance(obj, dict) and "resize" in obj:
        if len(obj) != 1:
            raise BadRequestError(f'exec resize message: expected only {{"resize": [rows, cols]}}, got {line[:100]!r}')
        return Resize(*window_size(obj["resize"], "exec resize message"))
    try:
        return parse_signal_message(line)
    except BadRequestError:
        raise BadRequestError(
            f'exec control message: expected {{"signal": 1..64}} or {{"resize": [rows, cols]}}, got {line[:100]!r}'
        ) from None


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"
