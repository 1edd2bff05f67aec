"""Unit files written as TOML: sections of keys whose values are strings,
integers, floats, booleans, lists and inline tables. Pure; what it writes is
read back with tomllib and checked by units/parse.py before it is used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no TOML for {value!r}")
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"no TOML for {type(value).__name__}")


def unit_toml(sections: Mapping[str, Mapping[str, object]], header: str = "") -> str:
    """A unit file: `# header` lines, then each non-empty section in order."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for section, keys in sections.items():
        if not keys:
            continue
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"
