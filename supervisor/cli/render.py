"""Human output for supctl, modelled on systemctl / systemd-cgls / systemd-cgtop.

Pure: every function takes the API's JSON objects (and `now` where time
matters) and returns text. No I/O, no clock reads.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of supctl's start-up)
if TYPE_CHECKING:
    from typing import Any

BULLET = "●"
GREEN, RED, YELLOW, CYAN, RESET = "\x1b[0;1;32m", "\x1b[0;1;31m", "\x1b[0;1;33m", "\x1b[0;1;36m", "\x1b[0m"
LABEL_WIDTH = 11  # systemctl right-aligns "Main PID:" etc. to this column
TREE_BRANCH, TREE_LAST, TREE_PIPE, TREE_SPACE = "├─", "└─", "│ ", "  "
ACTIVE_STATES = ("running", "frozen")
# systemctl's colours, by the state a unit is in (or an event names)
STATE_COLORS = {"running": GREEN, "failed": RED, "error": RED, "restarting": YELLOW, "frozen": CYAN}

# unit state → systemctl's "Active:" wording
ACTIVE_WORDING = {
    "running": "active (running)",
    "frozen": "active (frozen)",
    "starting": "activating (start)",
    "stopping": "deactivating (stop)",
    "restarting": "activating (auto-restart)",
    "exited": "inactive (dead)",
    "inactive": "inactive (dead)",
    "failed": "failed",
    "error": "error",
}


def human_size(n: int | None) -> str:
    """1024-based, one decimal above a KiB: 512B, 1.2M, 64.0M."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n}B"
    value = float(n)
    for suffix in "KMGTPE":
        value /= 1024
        if value < 1024 or suffix == "E":
            return f"{value:.1f}{suffix}"
    raise AssertionError("unreachable")


_SPANS = ((86400, "day"), (3600, "h"), (60, "min"), (1, "s"))


def human_duration(seconds: float) -> str:
    """Two most significant units like systemd: 5s, 2min 3s, 1h 2min, 3 days 4h."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    remaining = int(seconds)
    parts: list[str] = []
    for size, name in _SPANS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} day{'s' if count != 1 else ''}" if name == "day" else f"{count}{name}")
        elif parts:
            break  # "1h 0min" reads worse than "1h"
        if len(parts) == 2:
            break
    return " ".join(parts)


def human_cpu(ns: int | None) -> str:
    """CPU time like systemctl: 12ms, 1.234s, 2min 3.456s."""
    if ns is None:
        return "-"
    ms = ns // 1_000_000
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3f}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}min {secs:.3f}s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h {minutes}min {secs:.3f}s"


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def format_timestamp(when: datetime) -> str:
    """systemd's style: Sun 2026-11-29 23:50:01 UTC."""
    utc = when.astimezone(timezone.utc)
    return utc.strftime("%a %Y-%m-%d %H:%M:%S UTC")


def ago(when: datetime, now: datetime) -> str:
    return human_duration((now - when).total_seconds()) + " ago"


def active_line(status: Mapping[str, Any], now: datetime) -> str:
    state = status.get("state", "")
    text = ACTIVE_WORDING.get(state, state)
    last_exit = status.get("last_exit")
    if state == "failed" and last_exit:
        text += f" (Result: {last_exit.get('reason')})"
    since = parse_time(status.get("since"))
    if since is not None and state != "error":
        text += f" since {format_timestamp(since)}; {ago(since, now)}"
    return text


def _label(name: str, value: str) -> str:
    return f"{name:>{LABEL_WIDTH}}: {value}"


def _more(value: str) -> str:
    """A further line of the value above, under it."""
    return " " * (LABEL_WIDTH + 2) + value


def paint(text: str, state: str, color: bool) -> str:
    """`text` in the colour of `state`, or as it is (colour off, or a state without one)."""
    code = STATE_COLORS.get(state) if color else None
    return f"{code}{text}{RESET}" if code and text else text


def visible_len(text: str) -> int:
    """Columns `text` takes on a terminal: colour codes take none."""
    for code in (*STATE_COLORS.values(), RESET):
        text = text.replace(code, "")
    return len(text)


def _bullet(state: str, color: bool) -> str:
    return paint(BULLET, state, color)


def _program(cmdline: str) -> str:
    argv0 = cmdline.split(" ", 1)[0] if cmdline else ""
    return argv0.rsplit("/", 1)[-1]


def _limit(status: Mapping[str, Any], key: str, fallback_key: str) -> Any:
    limits = status.get("limits") or {}
    value = limits.get(key)
    return value if value is not None else status.get(fallback_key)


def render_status(
    status: Mapping[str, Any], now: datetime, log_lines: Iterable[str] = (), *, color: bool = False
) -> str:
    """One unit, like `systemctl status`."""
    name, state = status.get("name", "?"), status.get("state", "")
    file = status.get("file") or ""
    title = (file.rsplit("/", 1)[-1] if file else f"{name}.toml")
    description = status.get("description")
    lines = [f"{_bullet(state, color)} {title}" + (f" - {description}" if description else "")]
    # enabled is null for an invalid file: whether it enables the unit is unknown
    enabled = status.get("enabled")
    enabled = "" if enabled is None else "; enabled" if enabled else "; disabled"
    loaded = "error" if state == "error" else "loaded"
    lines.append(_label("Loaded", f"{loaded} ({file}{enabled})" if file else loaded))
    active = active_line(status, now)
    wording = ACTIVE_WORDING.get(state, state)
    if color and active.startswith(wording):
        active = paint(wording, state, color) + active[len(wording) :]
    lines.append(_label("Active", active))
    if status.get("error"):
        lines.append(_label("Error", str(status["error"])))
    if status.get("frozen") and status.get("freeze_reason"):
        lines.append(_label("Frozen", str(status["freeze_reason"])))
    processes = status.get("processes") or []
    pid = status.get("pid")
    if pid is not None:
        program = next((_program(p.get("cmdline", "")) for p in processes if p.get("pid") == pid), "")
        lines.append(_label("Main PID", f"{pid} ({program})" if program else str(pid)))
    network = status.get("network")
    if network:
        where = network.get("address") or "no address"
        lines.append(_label("Network", f"{network.get('network')} ({where})"))
        if network.get("ports"):
            lines.append(_label("Ports", ", ".join(network["ports"])))
    if status.get("command"):
        lines.append(_label("Command", shlex.join(status["command"])))
    restarts = status.get("restarts", 0)
    last_exit = status.get("last_exit")
    lines.append(_label("Restarts", f"{restarts}" + (f" (last exit: {last_exit.get('reason')})" if last_exit else "")))
    if status.get("health"):
        health = str(status["health"])
        output = (status.get("health_output") or "").strip().splitlines()
        if status["health"] == "unhealthy" and output:
            health += f" ({output[-1]})"
        lines.append(_label("Health", health))
    resources = status.get("resources") or {}
    if resources.get("pids_current") is not None:
        limit = _limit(status, "pids_max", "tasks_max")
        lines.append(_label("Tasks", f"{resources['pids_current']}" + (f" (limit: {limit})" if limit else "")))
    if resources.get("memory_current") is not None:
        extra = []
        if resources.get("memory_peak") is not None:
            extra.append(f"peak: {human_size(resources['memory_peak'])}")
        if _limit(status, "memory_high", "memory_high"):
            extra.append(f"high: {human_size(_limit(status, 'memory_high', 'memory_high'))}")
        if _limit(status, "memory_max", "memory_max"):
            extra.append(f"max: {human_size(_limit(status, 'memory_max', 'memory_max'))}")
        lines.append(_label("Memory", human_size(resources["memory_current"]) + (f" ({', '.join(extra)})" if extra else "")))
    if resources.get("cpu_usage_ns") is not None:
        lines.append(_label("CPU", human_cpu(resources["cpu_usage_ns"])))
    oom, total = status.get("oom_kills"), status.get("oom_kills_total")
    if oom is None:  # a supd from before the per-run count
        oom = resources.get("oom_kills")
    if oom is not None and (oom or total or resources.get("memory_current") is not None):
        # this run's (or the last run's, once it ended), then every run's
        lines.append(_label("OOM kills", f"{oom}" + (f" (total: {total})" if total is not None else "")))
    for warning in status.get("warnings") or []:
        lines.append(_label("Warning", str(warning)))
    if status.get("cgroup"):
        if status.get("cgroup_driver"):
            lines.append(_label("Driver", str(status["cgroup_driver"])))
        lines.append(_label("CGroup", str(status["cgroup"])))
        indent = " " * (LABEL_WIDTH + 2)
        for i, proc in enumerate(processes):
            branch = TREE_LAST if i == len(processes) - 1 else TREE_BRANCH
            lines.append(f"{indent}{branch}{proc.get('pid')} {proc.get('cmdline', '')}".rstrip())
    logs = [line.rstrip("\n") for line in log_lines]
    if logs:
        lines.append("")
        lines.extend(logs)
    return "\n".join(lines) + "\n"


def uptime(status: Mapping[str, Any], now: datetime) -> str:
    since = parse_time(status.get("since"))
    if status.get("state") not in ACTIVE_STATES or since is None:
        return "-"
    return human_duration((now - since).total_seconds())


def _ljust(text: str, width: int) -> str:
    return text + " " * (width - visible_len(text))


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded.
    Cells may be coloured: widths count what shows."""
    widths = [max(visible_len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [_ljust(cell, widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        out.append("  ".join(cells).rstrip())
    return out


def render_list(statuses: list[Mapping[str, Any]], now: datetime, *, color: bool = False) -> str:
    rows = [
        [
            str(s.get("name", "")),
            paint(str(s.get("state", "")), str(s.get("state", "")), color),
            "-" if s.get("pid") is None else str(s["pid"]),
            uptime(s, now),
            str(s.get("restarts", 0)),
            str(s.get("description") or ""),
        ]
        for s in statuses
    ]
    lines = table(["UNIT", "STATE", "PID", "UPTIME", "RESTARTS", "DESCRIPTION"], rows)
    count = len(statuses)
    lines += ["", f"{count} unit{'s' if count != 1 else ''} listed."]
    return "\n".join(lines) + "\n"


def _tree_rows(
    node: Mapping[str, Any], prefix: str, branch: str, rows: list[list[str]], width: int | None, color: bool
) -> None:
    name = str(node.get("name", "?"))
    state = str(node.get("state") or "")
    if state and state not in ACTIVE_STATES:
        name += " " + paint(f"({state})", state, color)
    elif state:
        name = paint(name, state, color)
    tasks = node.get("tasks")
    rows.append(
        [
            f"{prefix}{branch}{name}",
            "-" if tasks is None else str(tasks),
            human_size(node.get("memory_current")),
            human_cpu(node.get("cpu_usage_ns")),
        ]
    )
    child_prefix = prefix + (TREE_PIPE if branch == TREE_BRANCH else TREE_SPACE if branch else "")
    children = list(node.get("children") or [])
    processes = list(node.get("processes") or [])
    entries: list[tuple[str, Any]] = [("cgroup", c) for c in children] + [("proc", p) for p in processes]
    for i, (kind, entry) in enumerate(entries):
        sub_branch = TREE_LAST if i == len(entries) - 1 else TREE_BRANCH
        if kind == "cgroup":
            _tree_rows(entry, child_prefix, sub_branch, rows, width, color)
        else:
            label = f"{child_prefix}{sub_branch}{entry.get('pid')} {entry.get('cmdline', '')}".rstrip()
            rows.append([label if width is None else label[:width], "", "", ""])


def render_tree(tree: Mapping[str, Any], width: int | None = None, *, color: bool = False) -> str:
    """systemd-cgls's tree with systemd-cgtop's Tasks/Memory/CPU columns.
    A process line (command lines are long) is cut at `width`, the terminal's;
    None (not a terminal) keeps it whole, like systemd-cgls into a pipe."""
    rows: list[list[str]] = []
    _tree_rows(tree, "", "", rows, width, color)
    header = ["CGROUP", "TASKS", "MEMORY", "CPU"]
    width = max(visible_len(r[0]) for r in [header, *rows] if any(r[1:]))
    num = [max(len(r[i]) for r in [header, *rows]) for i in (1, 2, 3)]
    out = []
    for row in [header, *rows]:
        if not any(row[1:]):
            out.append(row[0])
            continue
        out.append(f"{_ljust(row[0], width)}  {row[1]:>{num[0]}}  {row[2]:>{num[1]}}  {row[3]:>{num[2]}}".rstrip())
    return "\n".join(out) + "\n"


def render_event(event: Mapping[str, Any], *, color: bool = False) -> str:
    when = parse_time(event.get("time"))
    stamp = when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if when else str(event.get("time", ""))
    reason = event.get("reason")
    name = str(event.get("event", ""))
    return f"{stamp} {event.get('unit', '-')}: {paint(name, name, color)}" + (f" ({reason})" if reason else "")


def render_images(images: list[Mapping[str, Any]]) -> str:
    rows = []
    for image in images:
        digest = str(image.get("digest", ""))
        rows.append(
            [
                str(image.get("name") or image.get("tag") or ""),
                digest.split(":", 1)[-1][:12],
                str(len(image.get("layers") or [])),
                human_size(image.get("size")),
                human_size(image.get("shared_size")),
                str(image.get("created") or "-"),
                ",".join(image.get("units") or []) or "-",
            ]
        )
    lines = table(["IMAGE", "DIGEST", "LAYERS", "SIZE", "SHARED", "CREATED", "UNITS"], rows)
    return "\n".join(lines) + "\n"


def render_removal(removal: Mapping[str, Any]) -> str:
    """`supctl image rm` and `prune`: what went, and the bytes freed."""
    lines = [f"removed image {i.get('name')} {i.get('digest')}" for i in removal.get("images") or []]
    lines += [f"removed layer {layer}" for layer in removal.get("layers") or []]
    if removal.get("tmp_dirs"):
        lines.append(f"removed {removal['tmp_dirs']} stale temp dir(s)")
    lines.append(f"freed {human_size(removal.get('freed') or 0)}")
    return "\n".join(lines) + "\n"


def render_image_config(image: Mapping[str, Any]) -> str:
    """`supctl image inspect`: the image and the config its units default to."""
    config = image.get("config") or {}
    lines = [
        _label("Image", str(image.get("name") or "")),
        _label("Digest", str(image.get("digest") or "")),
        _label("Entrypoint", shlex.join(config.get("Entrypoint") or []) or "-"),
        _label("Cmd", shlex.join(config.get("Cmd") or []) or "-"),
        _label("WorkingDir", config.get("WorkingDir") or "-"),
        _label("User", config.get("User") or "-"),
        _label("StopSignal", config.get("StopSignal") or "-"),
    ]
    env = config.get("Env") or []
    lines.append(_label("Env", env[0] if env else "-"))
    lines.extend(_more(e) for e in env[1:])
    check = config.get("Healthcheck")
    if check:
        lines.append(_label("Healthcheck", shlex.join(check.get("Test") or [])))
        for key in ("Interval", "Timeout", "StartPeriod"):
            if check.get(key):
                lines.append(_more(f"{key}: {human_duration(check[key] / 1e9)}"))
        if check.get("Retries"):
            lines.append(_more(f"Retries: {check['Retries']}"))
    return "\n".join(lines) + "\n"


def render_info(info: Mapping[str, Any]) -> str:
    """`supctl info`: one "key: value" a line; `states` as "2 running, 1 failed"."""
    width = max((len(k) for k in info), default=0)
    return "".join(f"{key + ':':<{width + 1}} {_info_value(key, value)}\n" for key, value in info.items())


def _info_value(key: str, value: Any) -> str:
    if key == "states" and isinstance(value, Mapping):
        return ", ".join(f"{count} {state}" for state, count in sorted(value.items())) or "-"
    return _scalar(value)


def render_reload(result: Mapping[str, Any]) -> str:
    lines = []
    for key in ("added", "changed", "removed"):
        for entry in result.get(key) or []:
            name = entry.get("name") if isinstance(entry, Mapping) else entry
            lines.append(f"{key}: {name}")
    for name, message in (result.get("errors") or {}).items():
        lines.append(f"error: {name}: {message}")
    for name, message in (result.get("refused") or {}).items():
        lines.append(f"refused: {name}: {message}")
    return "\n".join(lines) + ("\n" if lines else "")


def _scalar(value: Any) -> str:
    """A JSON value as supctl shows it to a person: yes/no, "-" for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_scalar(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items()) or "-"
    return str(value)
