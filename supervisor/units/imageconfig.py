"""A unit's effective definition: what its file says, with the gaps filled
from its image's config by docker's rules, then supd's defaults. Pure.

- Entrypoint + Cmd run when the unit gives no command. `[exec].command`
  replaces Cmd; `[exec].entrypoint` replaces Entrypoint, and (as `docker run
  --entrypoint` does) drops the image's Cmd too: an image's Cmd is written as
  arguments for its own Entrypoint.
- Env lies under `[exec].environment`: a variable in both takes the unit's value.
- User and WorkingDir apply unless the unit sets `[exec].user` or
  `[exec].working_directory`.
- StopSignal applies unless `[stop].signal` is set.
- Healthcheck applies unless the unit has a `[health]` section; "NONE" turns
  it off, an empty test inherits nothing.

A unit without an image goes through the same function with no config: the
result always has a command, a working directory and a stop signal.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import Final

from supervisor.rootfs.oci import Healthcheck, ImageConfig
from supervisor.units import values
from supervisor.units.model import HealthSpec, Unit

DEFAULT_STOP_SIGNAL: Final = int(signal.SIGTERM)
DEFAULT_WORKING_DIRECTORY: Final = "/"
NS_PER_SECOND: Final = 1_000_000_000
# docker's defaults for a Healthcheck field left at 0
DOCKER_HEALTH: Final = HealthSpec(command=("true",), interval=30.0, timeout=30.0, retries=3, start_period=0.0)


class ImageConfigError(ValueError):
    """The unit and its image together give nothing runnable, or the image's
    config holds a value supd cannot use; the message names file and key."""


def effective_unit(unit: Unit, image: ImageConfig | None) -> Unit:
    """`unit` with its image's config applied (docker's rules) and defaults set."""
    config = image or ImageConfig()
    where = f"{unit.file}: [rootfs].image {unit.rootfs.image}" if unit.rootfs and unit.rootfs.image else str(unit.file)
    spec = unit.exec
    entrypoint = spec.entrypoint if spec.entrypoint is not None else config.entrypoint
    if spec.command:
        cmd = spec.command
    elif spec.entrypoint is not None:
        cmd = ()
    else:
        cmd = config.cmd
    argv = (*entrypoint, *cmd)
    if not argv or not argv[0]:
        raise ImageConfigError(
            f"{unit.file}: [exec].command: expected a command: the unit gives none and the image has "
            "no Entrypoint or Cmd"
        )
    working_directory = spec.working_directory or _image_working_dir(config.working_dir)
    user = spec.user if spec.user is not None else _image_user(config.user, where)
    exec_spec = replace(
        spec,
        command=argv,
        entrypoint=None,
        environment=merge_environment(config.env, spec.environment),
        working_directory=working_directory,
        user=user,
    )
    stop_signal = unit.stop.signal
    if stop_signal is None:
        stop_signal = _image_signal(config.stop_signal, where) if config.stop_signal else DEFAULT_STOP_SIGNAL
    health = unit.health
    if health is None and config.healthcheck is not None:
        health = health_from_image(config.healthcheck, where)
    return replace(unit, exec=exec_spec, stop=replace(unit.stop, signal=stop_signal), health=health)


def merge_environment(
    image_env: tuple[str, ...], unit_env: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """The image's "KEY=value" list under the unit's pairs; sorted pairs.
    An image entry without "=" names a variable to pass on; supd has none
    to pass, so it is left out."""
    merged: dict[str, str] = {}
    for entry in image_env:
        key, eq, value = entry.partition("=")
        if eq and key:
            merged[key] = value
    merged.update(dict(unit_env))
    return tuple(sorted(merged.items()))


def _image_working_dir(path: str) -> str:
    if not path:
        return DEFAULT_WORKING_DIRECTORY
    # docker takes a relative WorkingDir as relative to /
    return path if path.startswith("/") else "/" + path


def _image_user(user: str, where: str) -> str | None:
    if not user:
        return None
    name, colon, group = user.partition(":")
    # "user:group" with names is docker's too; supd looks names up in the rootfs
    if values.valid_user(user) or (colon and values.valid_user(name) and values.valid_user(group)):
        return user
    raise ImageConfigError(f"{where}: config User: expected a user name or uid[:gid], got {user!r}")


def _image_signal(name: str, where: str) -> int:
    try:
        return values.parse_signal(int(name) if name.isdigit() else name)
    except ValueError:
        raise ImageConfigError(f"{where}: config StopSignal: expected {values.SIGNAL_EXPECTED}, got {name!r}") from None


def health_from_image(check: Healthcheck, where: str) -> HealthSpec | None:
    """Docker's Healthcheck as a `[health]` section (the action stays "none":
    docker only reports). None for "NONE" or an empty test."""
    test = check.test
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD" and len(test) > 1 and test[1]:
        command = tuple(test[1:])
    elif test[0] == "CMD-SHELL" and len(test) == 2:
        command = ("/bin/sh", "-c", test[1])
    else:
        raise ImageConfigError(
            f'{where}: config Healthcheck.Test: expected ["CMD", program, args...], ["CMD-SHELL", line] '
            f'or ["NONE"], got {list(test)!r:.120}'
        )

    def seconds(ns: int, default: float) -> float:
        return ns / NS_PER_SECOND if ns > 0 else default

    return HealthSpec(
        command=command,
        interval=seconds(check.interval_ns, DOCKER_HEALTH.interval),
        timeout=seconds(check.timeout_ns, DOCKER_HEALTH.timeout),
        retries=check.retries or DOCKER_HEALTH.retries,
        start_period=seconds(check.start_period_ns, DOCKER_HEALTH.start_period),
    )
