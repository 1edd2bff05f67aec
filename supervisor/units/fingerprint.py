"""A unit definition's fingerprint: what a restarted supd compares to tell
whether a unit file changed while it was away. Pure.

It is taken over the definition's values, not its Python repr: a field a
newer supd adds to the model, at its default, leaves every fingerprint as it
was, so an upgrade does not look like an edit of every unit file (which
would restart every container it re-adopts).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from pathlib import PurePath
from typing import Any

# "v2:" tells these from the repr hashes of supd 0.1 (which carry no prefix)
PREFIX = "v2:"


def fingerprint(definition: Any) -> str:
    text = json.dumps(canonical(definition), sort_keys=True, separators=(",", ":"))
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def is_comparable(recorded: str) -> bool:
    """Whether a recorded fingerprint was taken the way this supd takes one."""
    return recorded.startswith(PREFIX)


def canonical(value: Any) -> Any:
    """JSON values; a dataclass's fields at their defaults left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not _at_default(f, getattr(value, f.name))
        }
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _at_default(f: dataclasses.Field[Any], value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False
