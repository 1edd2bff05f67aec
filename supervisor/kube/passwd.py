"""A named `[exec].user` as the uid and gid Kubernetes needs (runAsUser,
runAsGroup): looked up in the /etc/passwd of the unit's root filesystem, the
topmost layer that has one (an overlay shows that one). Reads files only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

MAX_PASSWD_BYTES: Final = 4 * 1024 * 1024


def passwd_ids(text: str, name: str) -> tuple[int, int] | None:
    """(uid, gid) of `name` in passwd-format `text`; None if it is not there. Pure."""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    return None


def lookup_user(layers: Sequence[Path], user: str) -> tuple[int, int] | None:
    """The ids of the user name in `user` ("name" or "name:group", the group
    then left to the passwd entry) in the topmost layer's /etc/passwd; None
    when no layer has one or the name is not in it."""
    name = user.partition(":")[0]
    for layer in reversed(layers):
        path = Path(layer) / "etc" / "passwd"
        if not os.path.lexists(path):
            continue
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_PASSWD_BYTES)
        except OSError:
            return None
        return passwd_ids(data.decode("utf-8", errors="replace"), name)
    return None
