"""supctl: ask the running supd for status and send it commands.

Exit codes follow systemctl: 0 success; 1 an error from supd or the
transport; 3 `status` of a unit that is not running; 4 no such unit.
Imports are kept to the client's (a few stdlib modules) so that supctl starts fast;
what only one command needs (image references, the package version) is
imported inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone

from supervisor.api import routes
from supervisor.api.client import Client, ClientError, RequestError
from supervisor.cli import render

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of supctl's start-up)
if TYPE_CHECKING:
    from typing import Any, TextIO

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_NO_SUCH_UNIT = 4
STATUS_LOG_LINES = 10
NO_SUCH_UNIT_PREFIX = "no such unit: "

Handler = Callable[[Client, argparse.Namespace, "Output"], int]


def wants_color(stdout: TextIO, environ: Mapping[str, str], no_color_flag: bool) -> bool:
    """systemctl's rule and no-color.org's: colour for a terminal, unless
    NO_COLOR is set (to anything, even empty) or --no-color is given."""
    return stdout.isatty() and "NO_COLOR" not in environ and not no_color_flag


class Output:
    """Where supctl writes, and whether humans are reading it."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, no_color: bool = False) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.color = wants_color(stdout, os.environ, no_color)

    def write(self, text: str) -> None:
        self.stdout.write(text)

    def write_bytes(self, data: bytes) -> None:
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is None:
            self.stdout.write(data.decode(errors="replace"))
        else:
            self.stdout.flush()
            buffer.write(data)
            buffer.flush()

    def json(self, obj: Any) -> None:
        # Indented for a person at a terminal; compact for a script, where
        # json's C encoder is ten times faster (1000 units: 700 KiB).
        if self.stdout.isatty():
            self.stdout.write(json.dumps(obj, indent=2) + "\n")
        else:
            self.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def show(self, obj: Any, as_json: bool, human: Callable[[Any], str]) -> None:
        """`--json` prints the object; otherwise `human(obj)` renders it."""
        if as_json:
            self.json(obj)
        else:
            self.write(human(obj))

    def json_line(self, obj: Any) -> None:
        self.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.stdout.flush()

    def error(self, message: str) -> None:
        self.stderr.write(f"supctl: {message}\n")


def _commands() -> Any:
    """The API's request models, for the image commands only: their dataclasses
    cost more start-up than `list` or `status` as a whole."""
    from supervisor.api import commands

    return commands


def exit_code_for(err: ClientError) -> int:
    if isinstance(err, RequestError) and err.status == 404 and err.message.startswith(NO_SUCH_UNIT_PREFIX):
        return EXIT_NO_SUCH_UNIT
    return EXIT_ERROR


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- commands ---------------------------------------------------------------


def cmd_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    units = client.call("GET", routes.ROUTES_BY_COMMAND["list_units"].path())
    out.show(units, args.json, lambda us: render.render_list(us, _now(), color=out.color))
    return EXIT_OK


def _status_text(client: Client, status: dict[str, Any], out: Output, with_logs: bool) -> str:
    logs: list[str] = []
    if with_logs:
        text = status.get("log_text")  # asked for with the status (?logs=N)
        raw = text.encode() if isinstance(text, str) else None
        try:
            if raw is None:  # journald, or a supd from before ?logs=N: the logs route
                raw = client.text("GET", routes.logs_path(status["name"], STATUS_LOG_LINES, follow=False))
            logs = _log_text(raw.splitlines(), timestamps=False).decode(errors="replace").splitlines()
        except RequestError:
            logs = []
    return render.render_status(status, _now(), logs, color=out.color)


def cmd_status(client: Client, args: argparse.Namespace, out: Output) -> int:
    route = routes.ROUTES_BY_COMMAND["unit_status"]
    names = list(args.units)
    if not names:
        names = [u["name"] for u in client.call("GET", routes.ROUTES_BY_COMMAND["list_units"].path())]
    code = EXIT_OK
    found: list[dict[str, Any]] = []
    # the unit's last log lines come in the same answer when they are shown
    query = f"?logs={STATUS_LOG_LINES}" if args.units and not args.json else ""
    for name in names:
        try:
            found.append(client.call("GET", route.path(name=name) + query))
        except RequestError as e:
            out.error(e.message)
            code = max(code, exit_code_for(e))
    if args.units and code == EXIT_OK and any(s.get("state") not in render.ACTIVE_STATES for s in found):
        code = EXIT_NOT_RUNNING
    if args.json:
        out.json(found[0] if len(args.units) == 1 and found else found)
    else:
        out.write("\n".join(_status_text(client, s, out, with_logs=bool(args.units)) for s in found))
    return code


def cmd_verb(client: Client, args: argparse.Namespace, out: Output) -> int:
    code = EXIT_OK
    results = []
    for name in args.units:
        try:
            results.append(client.call("POST", routes.command_path(name, args.command)))
        except RequestError as e:
            out.error(e.message)
            code = max(code, exit_code_for(e))
    if args.json:
        out.json(results[0] if len(args.units) == 1 and results else results)
    return code


def cmd_reload(client: Client, args: argparse.Namespace, out: Output) -> int:
    result = client.call("POST", routes.ROUTES_BY_COMMAND["reload"].path())
    out.show(result, args.json, render.render_reload)
    # A unit file with an error (that unit is not loaded, or keeps its old
    # definition) or a live update the kernel refused (the unit keeps running on
    # its old limits) is a failed reload; the rest of the folder still took effect.
    return EXIT_ERROR if result.get("errors") or result.get("refused") else EXIT_OK


def _log_text(lines: Iterable[bytes], timestamps: bool) -> bytes:
    from supervisor import logformat

    renderer = logformat.Renderer(timestamps)
    return b"".join(renderer.feed(logformat.parse_record(line)) for line in lines) + renderer.flush()


def _log_window(args: argparse.Namespace) -> tuple[int | None, int | None]:
    import time

    from supervisor import logformat

    now = time.time_ns()
    window: list[int | None] = []
    for flag, value in (("--since", args.since), ("--until", args.until)):
        try:
            window.append(None if value is None else logformat.parse_since(value, now))
        except ValueError as e:
            raise UsageError(f"logs {flag} {e}") from None
    return window[0], window[1]


def cmd_logs(client: Client, args: argparse.Namespace, out: Output) -> int:
    from supervisor import logformat

    since, until = _log_window(args)
    path = routes.logs_path(args.unit, args.lines, args.follow, since, until)
    if args.follow:
        lines: Iterable[bytes] = client.stream("GET", path)
    else:
        lines = client.text("GET", path).splitlines(keepends=True)
    renderer = logformat.Renderer(args.timestamps)
    for line in lines:
        record = logformat.parse_record(line.rstrip(b"\n"))
        if args.follow and until is not None and record.time_ns is not None and record.time_ns > until:
            break  # following past --until: docker stops there too
        if args.json:
            # one object per record; "partial": the line goes on in the stream's next record
            out.json_line({
                "unit": args.unit,
                "time": logformat.format_time(record.time_ns).decode() if record.time_ns is not None else None,
                "stream": record.stream,
                "partial": record.partial,
                "line": record.text.decode(errors="replace"),
            })
            continue
        text = renderer.feed(record)
        if text:
            out.write_bytes(text)
    if not args.json:
        out.write_bytes(renderer.flush())
    return EXIT_OK


def cmd_events(client: Client, args: argparse.Namespace, out: Output) -> int:
    path = routes.events_path(args.lines, args.follow)
    events: Iterable[dict[str, Any]]
    if args.follow:
        events = (json.loads(line) for line in client.stream("GET", path) if line.strip())
    else:
        events = client.call("GET", path)
    for event in events:
        if args.json:
            out.json_line(event)
        else:
            out.write(render.render_event(event, color=out.color) + "\n")
            out.stdout.flush()
    return EXIT_OK


def cmd_tree(client: Client, args: argparse.Namespace, out: Output) -> int:
    tree = client.call("GET", routes.ROUTES_BY_COMMAND["tree"].path())
    width = terminal_width(out.stdout) if out.stdout.isatty() else None
    out.show(tree, args.json, lambda t: render.render_tree(t, width, color=out.color))
    return EXIT_OK


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-e {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def cmd_exec(client: Client, args: argparse.Namespace, out: Output) -> int:
    argv = list(args.cmd)
    if not argv:
        raise UsageError("exec: expected a command after the unit, e.g. supctl exec web -- /bin/sh")
    env = parse_env(args.env)
    if args.tty:
        if args.interactive and not os.isatty(0):
            raise UsageError("exec -it: stdin is not a terminal; drop -t to use pipes")
        # the terminal type is the client's, as with ssh and docker
        env.setdefault("TERM", os.environ.get("TERM") or "xterm")
    out.stdout.flush()
    return client.exec(
        args.unit, argv, user=args.user, env=env, cwd=args.workdir, tty=args.tty, interactive=args.interactive
    )


def split_image_ref(ref: str) -> tuple[str, str]:
    """PATH[:TAG] → (absolute path, tag); a colon inside the last path part is the tag."""
    path, tag = ref, "latest"
    head, sep, tail = ref.rpartition(":")
    if sep and head and "/" not in tail and tail:
        path, tag = head, tail
    return os.path.abspath(path), tag


def pull_image(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Phases, not byte counts: "pulling SOURCE" on stderr (on a terminal a
    line the result replaces, elsewhere a plain line), then "SOURCE DIGEST"."""
    from pathlib import Path

    from supervisor.rootfs.reference import ReferenceError
    from supervisor.rootfs.source import SourceError, image_source, is_layout

    try:
        source = image_source(args.ref, Path.cwd())
    except (SourceError, ReferenceError) as e:
        raise UsageError(f"image pull: {e}") from None
    if is_layout(source):
        raise UsageError(f'image pull {args.ref}: that is an OCI layout; use "supctl image import {args.ref}"')
    authfile = os.path.abspath(args.authfile) if args.authfile else None
    body = _commands().PullImageRequest(source, authfile).to_json()
    result = _call_with_progress(client, "pull_image", body, f"pulling {source}", quiet=args.json)
    if args.json:
        out.json(result)
    else:
        out.write(f"{source} {result.get('digest', '')}\n")
    return EXIT_OK


def _call_with_progress(client: Client, command: str, body: dict[str, Any], what: str, *, quiet: bool) -> Any:
    """A long request (a pull, a push) announced on stderr: on a terminal as
    "WHAT …", erased when it ends; elsewhere as a plain line; nothing with
    --json."""
    progress = sys.stderr.isatty() and not quiet
    if progress:
        sys.stderr.write(f"{what} …")
    elif not quiet:
        sys.stderr.write(f"{what}\n")
    sys.stderr.flush()
    try:
        return client.call("POST", routes.ROUTES_BY_COMMAND[command].path(), body)
    finally:
        if progress:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def push_image(client: Client, args: argparse.Namespace, out: Output) -> int:
    """As pull_image: "pushing SOURCE to DEST" on stderr, then "DEST DIGEST"."""
    source = args.source
    if source.startswith(("./", "../")):  # a layout by a relative path; a unit name has no "/"
        head, sep, tag = source.rpartition(":")
        source = f"{os.path.abspath(head)}:{tag}" if sep and "/" not in tag else os.path.abspath(source)
    authfile = os.path.abspath(args.authfile) if args.authfile else None
    body = _commands().PushImageRequest(source, args.destination, authfile, args.tls_verify).to_json()
    what = f"pushing {source} to {args.destination}"
    result = _call_with_progress(client, "push_image", body, what, quiet=args.json)
    if args.json:
        out.json(result)
    else:
        out.write(f"{result.get('reference', args.destination)} {result.get('digest', '')}\n")
    return EXIT_OK


def cmd_image(client: Client, args: argparse.Namespace, out: Output) -> int:
    route_images = routes.ROUTES_BY_COMMAND["images"]
    if args.image_command == "import":
        path, tag = split_image_ref(args.ref)
        body = _commands().ImportImageRequest(path, tag).to_json()
        result = client.call("POST", routes.ROUTES_BY_COMMAND["import_image"].path(), body)
        if args.json:
            out.json(result)
        else:
            out.write(f"{result.get('name') or f'{path}:{tag}'} {result.get('digest', '')}\n")
        return EXIT_OK
    if args.image_command == "pull":
        return pull_image(client, args, out)
    if args.image_command == "push":
        return push_image(client, args, out)
    if args.image_command == "prune":
        result = client.call("POST", routes.ROUTES_BY_COMMAND["prune_images"].path())
        out.show(result, args.json, render.render_removal)
        return EXIT_OK
    images = client.call("GET", route_images.path())
    if args.image_command == "inspect":
        out.show(find_image(images, args.ref), args.json, render.render_image_config)
        return EXIT_OK
    if args.image_command == "rm":
        # by digest: the name the CLI resolved is the image the user saw in `image list`;
        # a name it cannot resolve goes as written, for supd to answer (404, 403)
        try:
            target = str(find_image(images, args.ref, "image rm")["digest"])
        except UsageError:
            target = args.ref if args.ref.startswith("sha256:") else "{}:{}".format(*split_image_ref(args.ref))
        body = _commands().RemoveImageRequest(target).to_json()
        result = client.call("POST", routes.ROUTES_BY_COMMAND["remove_image"].path(), body)
        out.show(result, args.json, render.render_removal)
        return EXIT_OK
    out.show(images, args.json, render.render_images)
    return EXIT_OK


def find_image(images: list[dict[str, Any]], ref: str, action: str = "image inspect") -> dict[str, Any]:
    """The stored image a reference names: "PATH[:TAG]" as imported, or its digest
    (a prefix of the hex part is enough when only one image has it)."""
    from pathlib import Path

    from supervisor.rootfs.reference import ReferenceError
    from supervisor.rootfs.source import SourceError, image_source

    path, tag = split_image_ref(ref)
    wanted = {f"{path}:{tag}", ref}
    try:  # a pulled image by its reference: "busybox" is docker://docker.io/library/busybox:latest
        wanted.add(image_source(ref, Path.cwd()))
    except (SourceError, ReferenceError):
        pass
    for image in images:
        if wanted & set(image.get("refs") or [image.get("name")]) or ref == image.get("digest"):
            return image
    hex_part = ref.split(":", 1)[-1] if ref.startswith("sha256:") else ref
    matches = [i for i in images if len(hex_part) >= 6 and str(i.get("digest", "")).split(":", 1)[-1].startswith(hex_part)]
    if len(matches) == 1:
        return matches[0]
    raise UsageError(f'{action}: no image "{ref}" in the store (supctl image list shows what is there)')


# supctl image push's route (its own helper's; the same daemon answers both)
PUSH_PATH = "/v1/images/push"


def cmd_export(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Every unit's manifests first, then all of them at once: one unit that
    cannot be exported prints nothing (no half a cluster's worth of YAML)."""
    from supervisor.kube.export import name_clash

    units = list(dict.fromkeys(args.units))
    clash = name_clash(units)  # before anything is pushed
    if clash is not None:
        raise UsageError(f"export kube: {clash}")
    results: list[dict[str, Any]] = []
    for name in units:
        result = client.call("GET", routes.export_kube_path(name, args.kind, args.namespace, None))
        if "needs_push" in result:
            if not args.push:
                raise UsageError(f"export kube {name}: {result['needs_push']}: use --push REGISTRY to push it to a registry first")
            destination = f"{args.push.rstrip('/')}/{name}:latest"
            body: dict[str, Any] = {"source": name, "destination": destination}
            if args.tls_verify is not None:
                body["tls_verify"] = args.tls_verify == "true"
            sys.stderr.write(f"pushing {name} to {destination}\n")
            pushed = client.call("POST", PUSH_PATH, body)
            image = f"{destination}@{pushed['digest']}"
            result = client.call("GET", routes.export_kube_path(name, args.kind, args.namespace, image))
        results.append(result)
    for result in results:
        for warning in result.get("warnings", ()):
            out.stderr.write(f"supctl: warning: {warning}\n")
    if args.json:
        out.json(results)
        return EXIT_OK
    import yaml  # export and import alone need it

    for result in results:
        for comment in result.get("comments", ()):
            out.write(f"# {comment}\n")
        for document in result["documents"]:
            out.write("---\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True))
    return EXIT_OK


def cmd_import(client: Client, args: argparse.Namespace, out: Output) -> int:
    from pathlib import Path

    from supervisor.kube.imports import KubeImportError, import_manifests, write_units

    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        out.error(f"import kube {args.file}: {getattr(e, 'strerror', None) or e}")
        return EXIT_ERROR
    if args.units is not None:
        units_dir = Path(args.units).absolute()
    else:
        units_dir = Path(client.call("GET", routes.ROUTES_BY_COMMAND["info"].path())["units_dir"])
    try:
        result = import_manifests(text, args.file, units_dir)
        for warning in result.warnings:
            out.stderr.write(f"supctl: warning: {warning}\n")
        written = write_units(result.units, units_dir)
    except KubeImportError as e:
        out.error(f"import kube: {e}")
        return EXIT_ERROR
    if args.json:
        out.json({"units": [u.name for u in result.units], "files": [str(p) for p in written], "warnings": list(result.warnings)})
    else:
        for path in written:
            out.write(f"wrote {path}\n")
    return EXIT_OK


def cmd_info(client: Client, args: argparse.Namespace, out: Output) -> int:
    info = client.call("GET", routes.ROUTES_BY_COMMAND["info"].path())
    if args.json:
        out.json(info)
    else:
        out.write(render.render_info(info))
    return EXIT_OK


# -- argument parsing -------------------------------------------------------


class UsageError(Exception):
    pass


def terminal_width(stream: TextIO) -> int:
    """shutil.get_terminal_size's answer ($COLUMNS, else the terminal's, else
    80) without importing shutil, whose own imports (bz2, lzma...) cost supctl
    ~4 ms."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout at the terminal's width; given the width,
    argparse does not import shutil to find it (it builds a formatter for
    every add_argument, so even `supctl list` paid for that import)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_width(sys.stdout) - 2)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # its sub-parsers are _Parsers too (add_subparsers uses type(self))


class _Skipped:
    """Stands in for the parser of a command this call does not run: takes
    and ignores whatever build_parser adds to it."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


def _untranslated(message: str) -> str:
    return message


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """supctl's parser; with `only`, that command's alone (the others are
    skipped: each subparser costs argparse a dozen gettext look-ups, in all
    about as long as supd takes to answer `list`)."""
    # argparse looks each of its own words ("usage: ", "options"...) up in a
    # message catalogue, and every look-up stats the locale folders: 2 ms of
    # each supctl call. Python ships no catalogue for argparse and supctl's
    # own texts are English, so its words are taken as they are.
    if getattr(argparse, "_", None) is not None:
        argparse._ = _untranslated  # type: ignore[attr-defined]
    common = _Parser(add_help=False)
    # SUPPRESS: the flag may come before or after the command without one hiding the other.
    common.add_argument("--socket", default=argparse.SUPPRESS, help="supd's control socket (default: $SUPD_SOCKET, else /run/supd/supd.sock; "
                        "a checkout's supctl falls back to its .run/runtime/supd.sock)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts (default: off)")
    common.add_argument(
        "--no-color", action="store_true", default=argparse.SUPPRESS,
        help="no colours (default: colour when stdout is a terminal and NO_COLOR is unset)",
    )

    parser = _Parser(prog="supctl", description="Control a running supd.", parents=[common])
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    add("list", cmd_list, "list units")
    p = add("status", cmd_status, "show unit status (exit 0 running, 3 not running, 4 no such unit)")
    p.add_argument("units", nargs="*", metavar="UNIT")
    for verb in routes.VERBS:
        p = add(verb, cmd_verb, f"{verb} units")
        p.add_argument("units", nargs="+", metavar="UNIT")
    add("reload", cmd_reload, "re-read the units folder")
    p = add("logs", cmd_logs, "show a unit's output")
    p.add_argument("unit", metavar="UNIT")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output (default: off)")
    p.add_argument("-n", "--lines", type=_count, default=routes.DEFAULT_LOG_LINES, help=f"how many lines from the end (default: {routes.DEFAULT_LOG_LINES})")
    p.add_argument("-t", "--timestamps", action="store_true", help="print each line's time (RFC 3339, UTC, ns) before it (default: off)")
    p.add_argument("--since", metavar="TIME", help='only lines from TIME on: RFC 3339 (2026-12-02T17:00:00Z) or back from now ("10m", "1h") (default: all)')
    p.add_argument("--until", metavar="TIME", help="only lines up to TIME, same forms as --since (default: no end)")
    p = add("events", cmd_events, "show state changes")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events (default: off)")
    p.add_argument("-n", "--lines", type=_count, default=routes.DEFAULT_EVENTS_N, help=f"how many recent events (default: {routes.DEFAULT_EVENTS_N})")
    add("tree", cmd_tree, "show the cgroup tree with figures")
    p = add("exec", cmd_exec, "run a command inside a running unit (root or admin_group only)")
    p.add_argument("unit", metavar="UNIT")
    p.add_argument("--user", "-u", help="user name or uid[:gid] inside the unit (default: the unit's user)")
    p.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY=VALUE",
        help="add or override a variable of the unit's environment, repeatable (default: none)",
    )
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the unit (default: the unit's)")
    p.add_argument(
        "-i", "--interactive", action="store_true",
        help="with -t, copy stdin to the terminal; without -t stdin is always passed (default: off)",
    )
    p.add_argument(
        "-t", "--tty", action="store_true",
        help="run on a new terminal inside the unit, ours in raw mode meanwhile, TERM passed (default: off, pipes)",
    )
    p.add_argument("cmd", nargs="*", metavar="-- CMD", help="the command and its arguments")
    p = add("image", cmd_image, "pull, push, import, list, inspect, remove or prune OCI images")
    image_sub = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    imp = image_sub.add_parser("import", parents=[common], help="import an OCI image layout (root or admin_group only)")
    imp.add_argument("ref", metavar="PATH[:TAG]")
    pull = image_sub.add_parser("pull", parents=[common], help="pull an image from a registry or an archive (root or admin_group only)")
    pull.add_argument("ref", metavar="REF", help="busybox:1.36, registry:5000/app@sha256:…, docker-archive:FILE, oci-archive:FILE[:TAG], dir:DIR")
    pull.add_argument("--authfile", metavar="FILE", help="containers-auth.json to log in with (default: supd's auth_file)")
    push = image_sub.add_parser(
        "push", parents=[common],
        help="push a unit's layers with its command, env, user, workdir, stop signal and health check as an image, "
        "or a stored image, to a registry (root or admin_group only)",
    )  # fmt: skip
    push.add_argument("source", metavar="UNIT|REF", help="a unit's name, or a stored image (as pulled or imported, or its digest)")
    push.add_argument("destination", metavar="REGISTRY/NAME:TAG", help="where to push it (:latest when no tag)")
    push.add_argument("--authfile", metavar="FILE", help="containers-auth.json to log in with (default: supd's auth_file)")
    push.add_argument(
        "--tls-verify", metavar="BOOL", type=parse_bool, default=None,
        help="check the registry's TLS certificate (default: yes, except for loopback and supd's insecure_registries)",
    )  # fmt: skip
    image_sub.add_parser("list", parents=[common], help="list imported images, their shared size and the units using them")
    ins = image_sub.add_parser("inspect", parents=[common], help="show an imported image's config (Entrypoint, Cmd, Env...)")
    ins.add_argument("ref", metavar="PATH[:TAG]|DIGEST")
    rm = image_sub.add_parser(
        "rm", parents=[common], help="remove an image and the layers nothing else uses; refused while a unit uses it (root or admin_group only)"
    )
    rm.add_argument("ref", metavar="PATH[:TAG]|DIGEST")
    image_sub.add_parser(
        "prune", parents=[common], help="remove layers no image or unit uses and stale temp dirs (root or admin_group only)"
    )
    p = add("export", cmd_export, "print units as Kubernetes manifests (root or admin_group only)")
    export_sub = p.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    kube = export_sub.add_parser(
        "kube", parents=[common], help="a Pod or Deployment per unit, plus a Service for published ports; warnings on stderr"
    )
    kube.add_argument("units", nargs="+", metavar="UNIT")
    kube.add_argument("--kind", choices=("pod", "deployment"), default="pod", help="the workload each unit becomes (default: pod)")
    kube.add_argument("--namespace", metavar="NS", help="metadata.namespace of every manifest (default: none, kubectl's current)")
    kube.add_argument(
        "--push", metavar="REGISTRY",
        help="push units whose root filesystem is not in a registry to REGISTRY/UNIT:latest first (default: such a unit is an error)",
    )  # fmt: skip
    kube.add_argument(
        "--tls-verify", choices=("true", "false"), help="verify the registry's TLS certificate when pushing (default: supd's push default)"
    )
    p = add("import", cmd_import, "turn Kubernetes manifests into unit files")
    import_sub = p.add_subparsers(dest="import_format", metavar="FORMAT", required=True)
    kube = import_sub.add_parser(
        "kube", parents=[common], help="Pods and Deployments (and Services for their ports) in FILE.yaml as unit files; warnings on stderr"
    )
    kube.add_argument("file", metavar="FILE.yaml")
    kube.add_argument("--units", metavar="DIR", help="the folder to write the unit files in (default: supd's units_dir)")
    add("info", cmd_info, "show supd's configuration and host")
    return parser


class _VersionAction(argparse._VersionAction):
    """`--version`, reading the version only when asked: it comes from the
    package metadata, and importlib.metadata costs more than the rest of supctl."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, help="print supctl's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from supervisor.version import VERSION

        sys.stdout.write(f"supctl {VERSION}\n")  # where argparse's own version action prints
        parser.exit()


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _command_in(argv: list[str]) -> str | None:
    """The first word that is not an option (nor --socket's value): the command."""
    words = iter(argv)
    for word in words:
        if word == "--socket":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is exec's command, verbatim (argparse would
    # otherwise look for its own options in it).
    tail: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1 :]
    wanted = None if {"-h", "--help"} & set(argv) else _command_in(argv)
    parser = build_parser(only=wanted)
    if wanted is not None and wanted not in parser._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        parser = build_parser()  # not a command: the full parser names the right ones
    args = parser.parse_args(argv)
    if tail is not None:
        if args.command != "exec":
            build_parser().error(f"unexpected arguments after --: {' '.join(tail)}")
        args.cmd = list(args.cmd) + tail
    args.json = getattr(args, "json", False)
    args.socket = getattr(args, "socket", None)
    args.no_color = getattr(args, "no_color", False)
    return args


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse printed the usage error
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    out = Output(stdout or sys.stdout, stderr or sys.stderr, no_color=args.no_color)
    client = Client(args.socket)
    try:
        return args.handler(client, args, out)
    except ClientError as e:
        out.error(str(e))
        return exit_code_for(e)
    except UsageError as e:
        out.error(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output (e.g. `| head`) is gone; Python would complain
        # again when flushing stdout at exit, so point stdout at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.stdout.fileno())
        return EXIT_ERROR
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
